//! The example server's `/api/tokens` over a real socket, against the
//! management contract of issue 12 (`/work/notes/manage-contract.md` in the
//! issue's thread): dashboard JWTs from the demo login, every route,
//! every rejection's status, headers and `error` code, and the tokens
//! page's headers. Written against the example's stand-in handlers; they
//! hold for the library router once the example mounts it.

#[allow(dead_code)]
#[path = "../examples/server/app.rs"]
mod app;
#[allow(dead_code)]
#[path = "../examples/server/serve.rs"]
mod serve;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use keyward::http::{ExternalAuthError, ExternalAuthenticator};
use keyward::testing::{Fault, FaultyStore, Op};
use keyward::{Keyring, MemoryStore, NewKey};
use serde_json::{json, Value};

struct Server {
    addr: SocketAddr,
    keyring: Keyring,
    store: FaultyStore<MemoryStore>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// A dashboard session from the demo login.
    session: String,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    /// An error of the contract's shape: status, JSON, `no-store`, code.
    #[track_caller]
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.headers["content-type"], "application/json");
        assert_eq!(self.headers["cache-control"], "no-store");
        assert_eq!(self.body["error"], code, "body: {}", self.body);
        assert!(self.body["message"].is_string());
    }

    #[track_caller]
    fn assert_ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.headers["cache-control"], "no-store");
        &self.body
    }
}

async fn start() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = FaultyStore::new(MemoryStore::new());
    let keyring = app::keyring_on(store.clone());
    app::demo_keys(&keyring).await.unwrap();
    tokio::spawn(serve::serve(
        listener,
        app::router(keyring.clone()),
        serve::Limits::default(),
        std::future::pending(),
    ));
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut server = Server {
        addr,
        keyring,
        store,
        client,
        session: String::new(),
    };
    let login = server
        .raw(Method::POST, "/api/login", &[("x-account", "ada")], None)
        .await;
    let body = login.assert_ok(200);
    assert_eq!(body["tenant"], "org_demo");
    assert_eq!(body["logged_in"], true);
    server.session = body["session"].as_str().unwrap().to_owned();
    server
}

impl Server {
    async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let body = body.map(Full::from).unwrap_or_default();
        let res = self.client.request(req.body(body).unwrap()).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// A request with the session and, if any, a JSON body.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {}", self.session);
        let mut headers = vec![("authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let body = body.map(|b| b.to_string().into_bytes());
        self.raw(method, path, &headers, body).await
    }

    async fn create(&self, body: Value) -> Reply {
        self.call(Method::POST, "/api/tokens", Some(body)).await
    }

    async fn create_named(&self, name: &str) -> Value {
        self.create(json!({ "name": name }))
            .await
            .assert_ok(201)
            .clone()
    }
}

#[tokio::test]
async fn the_login_answers_a_dashboard_jwt_of_the_published_key_set() {
    let server = start().await;
    // A compact JWS: ES256 under the key the server publishes.
    let parts: Vec<&str> = server.session.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let jwks = server
        .raw(Method::GET, "/.well-known/jwks.json", &[], None)
        .await;
    // Public and cacheable, as an issuer's key set is.
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.headers["cache-control"], "max-age=3600");
    let jwks = jwks.body;
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert!(jwks["keys"][0].get("d").is_none(), "no private part");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["sub"], "account:ada");
    assert_eq!(claims["orgs"], serde_json::json!(["org_demo"]));
    let again = server
        .raw(Method::POST, "/api/login", &[("x-account", "ada")], None)
        .await;
    let again = again.assert_ok(200);
    assert_eq!(again["token_type"], "jwt");
    assert_eq!(again["expires_in"], 3600);
}

/// The demo login keeps the account name in the session table (up to
/// 10 000 sessions): a name of hundreds of kilobytes per login would let a
/// few clients fill the server's memory. Names are 1 to 200 bytes, as the
/// page's field allows.
#[tokio::test]
async fn the_login_refuses_an_account_name_too_long_to_keep() {
    let server = start().await;
    for account in ["a".repeat(64 * 1024), "a".repeat(201), "   ".to_owned()] {
        let reply = server
            .raw(Method::POST, "/api/login", &[("x-account", &account)], None)
            .await;
        assert_eq!(reply.status, 400, "{} bytes", account.len());
        assert_eq!(reply.body["error"], "invalid_body");
        assert!(reply.body.get("session").is_none());
    }
    let longest = "a".repeat(200);
    let reply = server
        .raw(Method::POST, "/api/login", &[("x-account", &longest)], None)
        .await;
    assert_eq!(reply.assert_ok(200)["account"], longest.as_str());
}

#[tokio::test]
async fn the_management_routes_need_a_live_session() {
    let server = start().await;
    let none = server.raw(Method::GET, "/api/tokens", &[], None).await;
    none.assert_error(401, "missing_credentials");
    let forged = "ab".repeat(32);
    let bearer = format!("Bearer {forged}");
    let wrong = server
        .raw(
            Method::GET,
            "/api/tokens",
            &[("authorization", &bearer)],
            None,
        )
        .await;
    wrong.assert_error(401, "invalid_token");
    // A product token is no dashboard session.
    let pl = server
        .keyring
        .issue(NewKey::new("pl", "org_demo", "uploader").scopes(["games:read"]))
        .await
        .unwrap();
    let bearer = format!("Bearer {}", pl.token.expose_secret());
    let key = server
        .raw(
            Method::GET,
            "/api/tokens",
            &[("authorization", &bearer)],
            None,
        )
        .await;
    // No product token is accepted there: refused before any lookup or
    // quota (`AuthLayer::accept_no_kinds`).
    key.assert_error(401, "invalid_token");
    // And a session is no product token.
    let bearer = format!("Bearer {}", server.session);
    let games = server
        .raw(
            Method::GET,
            "/api/games",
            &[("authorization", &bearer)],
            None,
        )
        .await;
    games.assert_error(401, "invalid_token");
}

#[tokio::test]
async fn a_dashboard_jwt_expires_and_is_bound_to_its_issuer() {
    let issuer = app::issuer::DevIssuer::new(Duration::from_secs(60));
    let auth = issuer.authenticator();
    let token = issuer.login("ada");
    let principal = auth.authenticate(&token).await.unwrap();
    assert_eq!(principal.subject(), "account:ada");
    assert_eq!(principal.tenants().len(), 1);
    assert_eq!(principal.tenants()[0].as_str(), "org_demo");
    // Expired past the leeway.
    let mut claims = issuer.claims("ada");
    claims["exp"] = (claims["iat"].as_i64().unwrap() - 120).into();
    assert!(matches!(
        auth.authenticate(&issuer.sign(&claims)).await,
        Err(ExternalAuthError::Expired)
    ));
    // Another audience, or another issuer's key: invalid.
    let mut claims = issuer.claims("ada");
    claims["aud"] = "elsewhere".into();
    assert!(matches!(
        auth.authenticate(&issuer.sign(&claims)).await,
        Err(ExternalAuthError::Invalid)
    ));
    let other = app::issuer::DevIssuer::new(Duration::from_secs(60));
    assert!(matches!(
        auth.authenticate(&other.login("ada")).await,
        Err(ExternalAuthError::Invalid)
    ));
}

#[tokio::test]
async fn create_shows_the_token_once_with_the_chosen_expiry_and_scopes() {
    let server = start().await;
    let reply = server
        .create(json!({
            "name": "ci", "scopes": ["games:read", "versions:write"], "expires_in": "90d",
            "rate_limit": 10, "metadata": { "team": "web" },
        }))
        .await;
    let body = reply.assert_ok(201);
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("pl_"));
    let key = &body["key"];
    assert_eq!(key["kind"], "pl");
    assert_eq!(key["tenant"], "org_demo");
    assert_eq!(key["state"], "active");
    assert_eq!(key["display_prefix"], &token[..8]);
    assert_eq!(key["scopes"], json!(["games:read", "versions:write"]));
    assert_eq!(key["metadata"], json!({ "team": "web" }));
    assert_eq!(key["last_used_at"], Value::Null);
    assert!(key.get("hash").is_none() && key.get("token").is_none());
    let info = server.keyring.verify(token).await.unwrap();
    assert_eq!(info.tenant().as_str(), "org_demo");
    let created = key["created_at"].as_str().unwrap();
    let expires = key["expires_at"].as_str().unwrap();
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    };
    assert_eq!(parse(expires) - parse(created), time::Duration::days(90));

    // Never shown again: not in get, not in the list.
    let id = key["id"].as_str().unwrap();
    let got = server
        .call(Method::GET, &format!("/api/tokens/{id}"), None)
        .await;
    assert!(!got.assert_ok(200).to_string().contains(token));
    let list = server.call(Method::GET, "/api/tokens", None).await;
    assert!(!list.assert_ok(200).to_string().contains(token));

    let at = server
        .create(json!({ "name": "until", "expires_at": "2030-01-01T00:00:00Z" }))
        .await;
    assert_eq!(
        at.assert_ok(201)["key"]["expires_at"],
        "2030-01-01T00:00:00Z"
    );
    // Bounded: at most five years ahead.
    server
        .create(json!({ "name": "forever", "expires_at": "2999-01-01T00:00:00Z" }))
        .await
        .assert_error(400, "invalid_body");
    let defaults = server.create_named("defaults").await;
    assert_eq!(defaults["key"]["scopes"], json!([]));
    assert_eq!(defaults["key"]["expires_at"], Value::Null);
}

#[tokio::test]
async fn create_refuses_bad_bodies_with_typed_errors() {
    let server = start().await;
    let cases = [
        (json!({ "name": "x", "team": "me" }), 400, "invalid_body"),
        (json!({ "name": "x", "owner": "" }), 400, "invalid_label"),
        (json!({ "name": 7 }), 400, "invalid_body"),
        (json!({}), 400, "invalid_body"),
        (
            json!({ "name": "x", "expires_in": "2w" }),
            400,
            "invalid_body",
        ),
        (
            json!({ "name": "x", "expires_in": "30d", "expires_at": "2999-01-01T00:00:00Z" }),
            400,
            "invalid_body",
        ),
        (
            json!({ "name": "x", "expires_at": "tomorrow" }),
            400,
            "invalid_body",
        ),
        (
            json!({ "name": "x", "expires_at": "2000-01-01T00:00:00Z" }),
            400,
            "invalid_body",
        ),
        (json!({ "name": "x", "rate_limit": 0 }), 400, "invalid_body"),
        (
            json!({ "name": "x", "scopes": ["games:fly"] }),
            400,
            "invalid_scope",
        ),
        (
            json!({ "name": "x", "scopes": ["keys:manage"] }),
            400,
            "invalid_scope",
        ),
        (
            json!({ "name": "x", "scopes": ["tokens:manage"] }),
            400,
            "invalid_scope",
        ),
        (json!({ "name": "" }), 400, "invalid_label"),
        (json!({ "name": "a\u{202e}b" }), 400, "invalid_label"),
        (
            json!({ "name": "x", "metadata": { "": "v" } }),
            400,
            "invalid_label",
        ),
        (json!({ "name": "x", "kind": "pk" }), 400, "unknown_kind"),
    ];
    for (body, status, code) in cases {
        let reply = server.create(body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        reply.assert_error(status, code);
    }
    let auth = format!("Bearer {}", server.session);
    let malformed = server
        .raw(
            Method::POST,
            "/api/tokens",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(b"{\"name\":".to_vec()),
        )
        .await;
    malformed.assert_error(400, "invalid_body");
    let text = server
        .raw(
            Method::POST,
            "/api/tokens",
            &[("authorization", &auth), ("content-type", "text/plain")],
            Some(br#"{"name":"x"}"#.to_vec()),
        )
        .await;
    text.assert_error(415, "unsupported_media_type");
    let huge = json!({ "name": "x".repeat(20 * 1024) })
        .to_string()
        .into_bytes();
    let big = server
        .raw(
            Method::POST,
            "/api/tokens",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(huge),
        )
        .await;
    big.assert_error(413, "payload_too_large");
    // Nothing was issued.
    let list = server.call(Method::GET, "/api/tokens", None).await;
    let names: Vec<&str> = list.assert_ok(200)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["games viewer", "ci uploader"]);
}

#[tokio::test]
async fn the_list_is_newest_first_paged_and_filtered() {
    let server = start().await;
    let a = server.create_named("a").await;
    let b = server.create_named("b").await;
    let a_id = a["key"]["id"].as_str().unwrap();
    server
        .call(Method::POST, &format!("/api/tokens/{a_id}/revoke"), None)
        .await
        .assert_ok(200);

    let page = |q: &'static str| server.call(Method::GET, q, None);
    let first = page("/api/tokens?limit=1").await;
    let first = first.assert_ok(200);
    assert_eq!(first["keys"][0]["name"], "b");
    assert_eq!(first["keys"][0]["id"], b["key"]["id"]);
    // Opaque, and bound to the tenant.
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let next = server
        .call(
            Method::GET,
            &format!("/api/tokens?limit=2&cursor={cursor}"),
            None,
        )
        .await;
    let next = next.assert_ok(200);
    let names: Vec<&str> = next["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "games viewer"]);
    assert!(next["next_cursor"].is_string());

    let revoked = page("/api/tokens?state=revoked").await;
    let revoked = revoked.assert_ok(200);
    assert_eq!(revoked["keys"].as_array().unwrap().len(), 1);
    assert_eq!(revoked["keys"][0]["state"], "revoked");
    assert_eq!(revoked["next_cursor"], Value::Null);
    let active = page("/api/tokens?state=active&kind=pl").await;
    assert_eq!(active.assert_ok(200)["keys"].as_array().unwrap().len(), 3);
    // Only this tenant's `pl_` tokens: the `pk_` demo keys are another's.
    let all = page("/api/tokens").await;
    assert!(all.assert_ok(200)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["kind"] == "pl" && k["tenant"] == "org_demo"));

    for bad in [
        "/api/tokens?limit=0",
        "/api/tokens?limit=101",
        "/api/tokens?limit=x",
        "/api/tokens?state=gone",
        "/api/tokens?cursor=key_nope",
        "/api/tokens?page=2",
    ] {
        let reply = page(bad).await;
        assert_eq!(reply.status, 400, "{bad}");
        reply.assert_error(400, "invalid_body");
    }
    page("/api/tokens?kind=pk")
        .await
        .assert_error(400, "unknown_kind");
}

#[tokio::test]
async fn another_tenants_key_is_as_absent_as_an_unknown_one() {
    let server = start().await;
    let theirs = server
        .keyring
        .issue(NewKey::new("pl", "org_other", "theirs"))
        .await
        .unwrap();
    let id = theirs.info.id().as_str().to_owned();
    let unknown = keyward::KeyId::generate().as_str().to_owned();
    for id in [id.as_str(), unknown.as_str(), "not-an-id"] {
        for (method, path, body) in [
            (Method::GET, format!("/api/tokens/{id}"), None),
            (
                Method::POST,
                format!("/api/tokens/{id}/revoke"),
                Some(json!({})),
            ),
            (Method::DELETE, format!("/api/tokens/{id}"), None),
            (
                Method::POST,
                format!("/api/tokens/{id}/rotate"),
                Some(json!({})),
            ),
        ] {
            let reply = server.call(method.clone(), &path, body).await;
            assert_eq!(reply.status, 404, "{method} {path}");
            reply.assert_error(404, "not_found");
        }
    }
    assert!(server
        .keyring
        .verify(theirs.token.expose_secret())
        .await
        .is_ok());
}

#[tokio::test]
async fn revoke_is_idempotent_and_rotate_hands_over_within_the_grace() {
    let server = start().await;
    let created = server.create_named("r").await;
    let id = created["key"]["id"].as_str().unwrap();
    let token = created["token"].as_str().unwrap();

    // Rotate with a grace: both work, the new token is shown once.
    let rotated = server
        .call(
            Method::POST,
            &format!("/api/tokens/{id}/rotate"),
            Some(json!({ "grace_seconds": 3600 })),
        )
        .await;
    let rotated = rotated.assert_ok(201).clone();
    let new_token = rotated["token"].as_str().unwrap();
    assert_eq!(rotated["key"]["rotated_from"], id);
    assert!(server.keyring.verify(token).await.is_ok());
    assert!(server.keyring.verify(new_token).await.is_ok());
    let over = server
        .call(
            Method::POST,
            &format!("/api/tokens/{id}/rotate"),
            Some(json!({ "grace_seconds": 30 * 86400 + 1 })),
        )
        .await;
    over.assert_error(400, "invalid_body");
    let bad = server
        .call(
            Method::POST,
            &format!("/api/tokens/{id}/revoke"),
            Some(json!({ "now": true })),
        )
        .await;
    bad.assert_error(400, "invalid_body");

    // Revoke: 200 with the view; again: the same instant. DELETE alike.
    let new_id = rotated["key"]["id"].as_str().unwrap();
    let first = server
        .call(Method::POST, &format!("/api/tokens/{new_id}/revoke"), None)
        .await;
    let first = first.assert_ok(200).clone();
    assert_eq!(first["state"], "revoked");
    let again = server
        .call(Method::DELETE, &format!("/api/tokens/{new_id}"), None)
        .await;
    assert_eq!(again.assert_ok(200)["revoked_at"], first["revoked_at"]);
    assert!(server.keyring.verify(new_token).await.is_err());

    let inactive = server
        .call(Method::POST, &format!("/api/tokens/{new_id}/rotate"), None)
        .await;
    inactive.assert_error(409, "key_inactive");
}

#[tokio::test]
async fn the_grid_lists_the_catalog_with_enforced_and_soon() {
    let server = start().await;
    let grid = server.call(Method::GET, "/api/tokens/grid", None).await;
    let grid = grid.assert_ok(200);
    assert_eq!(grid["kind"], "pl");
    assert_eq!(grid["default_scopes"], json!([]));
    let scopes = grid["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), app::playable_labs().entries().len());
    let games = scopes.iter().find(|s| s["name"] == "games:read").unwrap();
    assert_eq!(games["status"], "soon");
    assert_eq!(games["resource"], "games");
    assert_eq!(games["action"], "read");
    let versions = scopes
        .iter()
        .find(|s| s["name"] == "versions:write")
        .unwrap();
    assert_eq!(versions["status"], "enforced");
    assert!(versions["description"].is_string());
    server
        .call(Method::GET, "/api/tokens/grid?kind=pk", None)
        .await
        .assert_error(400, "unknown_kind");
}

#[tokio::test]
async fn a_failing_store_is_503_never_a_success() {
    let server = start().await;
    let created = server.create_named("s").await;
    let id = created["key"]["id"].as_str().unwrap();
    server.store.set_fault(Fault::Fail);
    for (method, path, body) in [
        (Method::GET, "/api/tokens".to_owned(), None),
        (
            Method::POST,
            "/api/tokens".to_owned(),
            Some(json!({ "name": "n" })),
        ),
        (Method::GET, format!("/api/tokens/{id}"), None),
        (Method::POST, format!("/api/tokens/{id}/revoke"), None),
        (Method::POST, format!("/api/tokens/{id}/rotate"), None),
    ] {
        let reply = server.call(method.clone(), &path, body).await;
        assert_eq!(reply.status, 503, "{method} {path}");
        reply.assert_error(503, "store_unavailable");
    }
    // Revoke fails after the tenant check passed.
    server.store.set_fault(Fault::None);
    server.store.set_fault_on(Op::Revoke, Fault::Fail);
    server
        .call(Method::POST, &format!("/api/tokens/{id}/revoke"), None)
        .await
        .assert_error(503, "store_unavailable");
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy_and_no_inline_script() {
    let server = start().await;
    for (path, content_type) in [
        ("/tokens", "text/html; charset=utf-8"),
        ("/tokens/app.js", "text/javascript; charset=utf-8"),
        ("/tokens/app.css", "text/css; charset=utf-8"),
    ] {
        let reply = server.raw(Method::GET, path, &[], None).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.headers["content-type"], content_type);
        assert_eq!(reply.headers["cache-control"], "no-store");
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
        let csp = reply.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
    }
    let page = include_str!("../examples/server/tokens/index.html");
    // Scripts only by `src` from this origin; no inline handlers.
    assert_eq!(page.matches("<script").count(), 1);
    assert!(page.contains(r#"<script src="/tokens/app.js" defer></script>"#));
    let handler = page.match_indices(" on").any(|(i, _)| {
        let rest = &page[i + 3..];
        let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        name_len > 0 && rest[name_len..].starts_with('=')
    });
    assert!(!handler, "an inline event handler");
    let js = include_str!("../examples/server/tokens/app.js");
    let code: String = js
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    assert!(!code.contains("innerHTML") && !code.contains("outerHTML"));
    assert!(!code.contains("insertAdjacentHTML") && !code.contains("document.write"));
}
