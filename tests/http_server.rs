//! The example server on a real socket (127.0.0.1, ephemeral port): its
//! router served by its own serving code (`examples/server/serve.rs`),
//! driven by a real HTTP/1 client: both products end to end, bad input as
//! it arrives over the wire, and clients that are slow or too many.

#[allow(dead_code)]
#[path = "../examples/server/app.rs"]
mod app;
#[allow(dead_code)]
#[path = "../examples/server/serve.rs"]
mod serve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use keyward::{Keyring, NewKey};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MISSING: Option<&str> = Some(r#"Bearer realm="api""#);
const INVALID_TOKEN: Option<&str> = Some(r#"Bearer realm="api", error="invalid_token""#);
const INVALID_REQUEST: Option<&str> = Some(r#"Bearer realm="api", error="invalid_request""#);

struct Server {
    addr: SocketAddr,
    keyring: Keyring,
    /// Demo key name → token.
    keys: HashMap<String, String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    #[track_caller]
    fn assert_rejected(&self, status: u16, code: &str, challenge: Option<&str>) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.headers
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            challenge
        );
        assert_eq!(self.body["error"], code, "body: {}", self.body);
        assert!(self.body["message"].is_string());
    }

    #[track_caller]
    fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        &self.body
    }
}

async fn start() -> Server {
    start_with(serve::Limits::default()).await
}

/// The API served by the example's serving code within `limits`.
async fn start_with(limits: serve::Limits) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_on(listener, limits).await
}

/// The same on `listener`.
async fn start_on(listener: tokio::net::TcpListener, limits: serve::Limits) -> Server {
    start_serving(listener, limits, false).await
}

/// As the example's main, key events delivered as webhooks to the
/// server's own receiver (kept out of the other tests: each delivery is a
/// connection of its own, which the connection-bound tests would count).
async fn start_sending_webhooks() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_serving(listener, serve::Limits::default(), true).await
}

async fn start_serving(
    listener: tokio::net::TcpListener,
    limits: serve::Limits,
    send_webhooks: bool,
) -> Server {
    let addr = listener.local_addr().unwrap();
    let webhooks = app::webhooks::Webhooks::new();
    let keyring = if send_webhooks {
        app::keyring_sending(keyward::MemoryStore::new(), webhooks.sink(addr))
    } else {
        app::keyring()
    };
    let keys = app::demo_keys(&keyring)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.name, k.token))
        .collect();
    let router = app::router_with(keyring.clone(), webhooks);
    tokio::spawn(serve::serve(
        listener,
        router,
        limits,
        std::future::pending(),
    ));
    let client = Client::builder(TokioExecutor::new()).build_http();
    Server {
        addr,
        keyring,
        keys,
        client,
    }
}

impl Server {
    fn key(&self, name: &str) -> &str {
        &self.keys[name]
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, HeaderValue)],
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        for (name, value) in headers {
            req = req.header(*name, value.clone());
        }
        let body = match body {
            Some(body) => {
                req = req.header("content-type", "application/json");
                Full::from(body.to_string())
            }
            None => Full::default(),
        };
        let res = self.client.request(req.body(body).unwrap()).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, HeaderValue)]) -> Reply {
        self.send(Method::GET, path, headers, None).await
    }

    async fn post(&self, path: &str, headers: &[(&str, HeaderValue)], body: Value) -> Reply {
        self.send(Method::POST, path, headers, Some(body)).await
    }
}

fn key(token: &str) -> (&'static str, HeaderValue) {
    ("x-api-key", HeaderValue::from_str(token).unwrap())
}

fn bearer(token: &str) -> (&'static str, HeaderValue) {
    let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    ("authorization", value)
}

fn raw(name: &'static str, value: &[u8]) -> (&'static str, HeaderValue) {
    (name, HeaderValue::from_bytes(value).unwrap())
}

#[tokio::test]
async fn player_os_keys_read_and_write_players() {
    let s = start().await;
    let backend = s.key("players backend");
    let dashboard = s.key("players dashboard");

    let body = s.get("/api/players", &[key(backend)]).await;
    assert_eq!(body.assert_status(200)["property_id"], "property_demo");
    let players = s.get("/api/players", &[key(dashboard)]).await;
    players.assert_status(200);
    // PlayerOS keys come in X-Api-Key only: as Bearer they are not read
    // there, and a PlayableLabs token is not a PlayerOS key.
    s.get("/api/players", &[bearer(dashboard)])
        .await
        .assert_rejected(401, "missing_credentials", MISSING);
    let pl = s.key("ci uploader");
    s.get("/api/players", &[key(pl)])
        .await
        .assert_rejected(401, "invalid_token", INVALID_TOKEN);
    s.get("/api/games", &[bearer(dashboard)])
        .await
        .assert_rejected(401, "invalid_token", INVALID_TOKEN);
    let created = s.post("/api/players", &[key(backend)], json!({})).await;
    created.assert_status(201);

    s.post("/api/players", &[key(dashboard)], json!({}))
        .await
        .assert_rejected(
            403,
            "insufficient_scope",
            Some(r#"Bearer realm="api", error="insufficient_scope", scope="write""#),
        );
    s.get("/api/players", &[])
        .await
        .assert_rejected(401, "missing_credentials", MISSING);
    // A PlayableLabs token is not a PlayerOS key: refused before any
    // lookup (it was a 403 "requires read" before kinds per layer).
    s.get("/api/players", &[key(s.key("ci uploader"))])
        .await
        .assert_rejected(401, "invalid_token", INVALID_TOKEN);
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked() {
    let s = start().await;
    let manager = &[key(s.key("key manager"))];
    let create = "/api/functions/create-api-key";

    let created = s
        .post(
            create,
            manager,
            json!({ "property_id": "property_demo", "name": "partner", "expires_in": "90d" }),
        )
        .await;
    assert_eq!(created.headers["cache-control"], "no-store");
    let created = created.assert_status(201).clone();
    assert_eq!(created["scopes"], json!(["read", "write"]));
    assert!(created["expires_at"].is_string());
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pk_"));
    assert_eq!(created["display_prefix"], &token[..8]);
    let id = created["id"].as_str().unwrap().to_owned();

    s.get("/api/players", &[key(&token)])
        .await
        .assert_status(200);

    let listed = s.get("/api/keys", manager).await;
    let keys = listed.assert_status(200)["keys"]
        .as_array()
        .unwrap()
        .clone();
    // The four demo keys of property_demo and the new one.
    assert_eq!(keys.len(), 5);
    let text = serde_json::to_string(&keys).unwrap();
    assert!(!text.contains(&token) && !text.contains("hash"));
    let row = keys.iter().find(|k| k["id"] == id.as_str()).unwrap();
    for field in [
        "name",
        "created_at",
        "last_used_at",
        "scopes",
        "display_prefix",
        "expires_at",
    ] {
        assert!(row.get(field).is_some(), "missing {field}");
    }

    // Bad requests, all with the layers' error shape.
    let bad = [
        (json!({ "name": "x" }), "invalid_body"),
        (
            json!({ "property_id": "property_demo", "name": "x", "expires_in": "2w" }),
            "invalid_body",
        ),
        (
            json!({ "property_id": "property_demo", "name": "x", "scopes": ["admin"] }),
            "invalid_scope",
        ),
    ];
    for (body, code) in bad {
        s.post(create, manager, body)
            .await
            .assert_rejected(400, code, None);
    }
    // A management key cannot copy itself.
    s.post(
        create,
        manager,
        json!({ "property_id": "property_demo", "name": "x", "scopes": ["keys:manage"] }),
    )
    .await
    .assert_rejected(403, "insufficient_scope", None);
    s.post(
        create,
        manager,
        json!({ "property_id": "property_other", "name": "x" }),
    )
    .await
    .assert_rejected(403, "tenant_mismatch", None);
    s.post(
        create,
        &[key(s.key("players backend"))],
        json!({ "property_id": "property_demo", "name": "x" }),
    )
    .await
    .assert_rejected(
        403,
        "insufficient_scope",
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="keys:manage""#),
    );

    // Revocation takes effect on the key's next request.
    let revoke = "/api/functions/revoke-api-key";
    s.post(revoke, manager, json!({ "id": id }))
        .await
        .assert_status(200);
    s.get("/api/players", &[key(&token)]).await.assert_rejected(
        401,
        "token_revoked",
        INVALID_TOKEN,
    );

    let foreign = s
        .keyring
        .issue(NewKey::new("pk", "property_other", "theirs"))
        .await
        .unwrap();
    for id in ["key_doesnotexist", "garbage id", foreign.info.id().as_str()] {
        s.post(revoke, manager, json!({ "id": id }))
            .await
            .assert_rejected(404, "not_found", None);
    }
}

/// A revocation reaches the example's own webhook receiver as a signed
/// `key.revoked` message, which it verified; forged or unsigned deliveries
/// to the receiver are refused over the wire.
#[tokio::test]
async fn a_revocation_is_delivered_as_a_verified_webhook() {
    let s = start_sending_webhooks().await;
    let manager = &[key(s.key("key manager"))];
    let created = s
        .post(
            "/api/functions/create-api-key",
            manager,
            json!({ "property_id": "property_demo", "name": "to revoke" }),
        )
        .await;
    let id = created.assert_status(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.post(
        "/api/functions/revoke-api-key",
        manager,
        json!({ "id": id }),
    )
    .await
    .assert_status(200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let revoked = loop {
        let received = s.get("/api/webhooks/received", manager).await;
        let events = received.assert_status(200)["events"]
            .as_array()
            .unwrap()
            .clone();
        let found = events
            .into_iter()
            .find(|e| e["type"] == "key.revoked" && e["data"]["key_id"] == id.as_str());
        if let Some(event) = found {
            break event;
        }
        assert!(Instant::now() < deadline, "no key.revoked webhook for {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(revoked["data"]["tenant"], "property_demo");
    assert!(revoked["webhook_id"].as_str().unwrap().starts_with("msg_"));
    assert!(!revoked.to_string().contains("pk_"), "{revoked}");
    // Only keys:manage may read the inbox.
    s.get("/api/webhooks/received", &[key(s.key("players backend"))])
        .await
        .assert_rejected(
            403,
            "insufficient_scope",
            Some(r#"Bearer realm="api", error="insufficient_scope", scope="keys:manage""#),
        );
    // The receiver refuses what its secret did not sign.
    let forged = [
        ("webhook-id", HeaderValue::from_static("msg_forged")),
        (
            "webhook-timestamp",
            HeaderValue::from_str(&time::OffsetDateTime::now_utc().unix_timestamp().to_string())
                .unwrap(),
        ),
        (
            "webhook-signature",
            HeaderValue::from_static("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        ),
    ];
    s.post(
        "/webhooks/keyward",
        &forged,
        json!({ "type": "key.revoked" }),
    )
    .await
    .assert_rejected(401, "webhook_signature_invalid", None);
    s.post("/webhooks/keyward", &[], json!({ "type": "key.revoked" }))
        .await
        .assert_rejected(400, "webhook_header_missing", None);
    // Only the receiver route is verified: other paths and methods answer
    // as before.
    assert_eq!(s.get("/webhooks/keyward", &[]).await.status, 405);
    assert_eq!(s.get("/nonexistent", &[]).await.status, 404);
    // A manager of another tenant sees none of property_demo's events.
    let other = s
        .keyring
        .issue(NewKey::new("pk", "property_other", "other manager").scopes(["read", "keys:manage"]))
        .await
        .unwrap();
    let theirs = s
        .get(
            "/api/webhooks/received",
            &[key(other.token.expose_secret())],
        )
        .await;
    let events = theirs.assert_status(200)["events"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        events
            .iter()
            .all(|e| e["data"]["tenant"] == "property_other"),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e["data"]["key_id"] == id.as_str()));
}

#[tokio::test]
async fn playable_labs_tokens_meet_soon_and_enforced_scopes() {
    let s = start().await;
    let ci = s.key("ci uploader");
    let viewer = s.key("games viewer");

    let games = s.get("/api/games", &[bearer(ci)]).await;
    assert_eq!(
        games.assert_status(200)["would_deny"],
        json!(["games:read"])
    );
    let games = s.get("/api/games", &[bearer(viewer)]).await;
    assert_eq!(games.assert_status(200)["would_deny"], json!([]));

    s.post("/api/games/game_1/versions", &[bearer(ci)], json!({}))
        .await
        .assert_status(201);
    s.post("/api/assets", &[bearer(ci)], json!({}))
        .await
        .assert_status(201);
    s.post("/api/games/game_1/versions", &[bearer(viewer)], json!({}))
        .await
        .assert_rejected(
            403,
            "insufficient_scope",
            Some(r#"Bearer realm="api", error="insufficient_scope", scope="versions:write""#),
        );

    let grid = s.get("/api/scopes", &[bearer(viewer)]).await;
    let scopes = grid.assert_status(200)["scopes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(scopes.len(), 9);
    assert_eq!(scopes[4]["name"], "versions:write");
    assert_eq!(scopes[4]["status"], "enforced");
    assert_eq!(scopes[0]["status"], "soon");

    // One character off: the checksum fails, 401 before any lookup.
    let mut typo = ci.as_bytes().to_vec();
    typo[12] = if typo[12] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();
    s.get("/api/games", &[bearer(&typo)]).await.assert_rejected(
        401,
        "invalid_token",
        INVALID_TOKEN,
    );
}

/// `/api/keys` is the library's management router for `pk_` keys: paged,
/// and a manager key can neither mint another manager nor a key wider than
/// itself.
#[tokio::test]
async fn the_key_management_router_pages_and_refuses_escalation() {
    let s = start().await;
    let manager = &[key(s.key("key manager"))];
    let page = s.get("/api/keys?limit=2", manager).await;
    let page = page.assert_status(200).clone();
    assert_eq!(page["keys"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let rest = s
        .get(&format!("/api/keys?limit=100&cursor={cursor}"), manager)
        .await;
    let rest = rest.assert_status(200).clone();
    assert!(rest["next_cursor"].is_null());
    assert!(!rest["keys"].as_array().unwrap().is_empty());

    for scopes in [
        json!(["keys:manage"]),
        json!(["read", "write", "keys:manage"]),
    ] {
        s.post(
            "/api/keys",
            manager,
            json!({ "name": "x", "scopes": scopes }),
        )
        .await
        .assert_rejected(
            403,
            "insufficient_scope",
            Some(r#"Bearer realm="api", error="insufficient_scope", scope="keys:manage""#),
        );
    }
    // A read-only key is no manager at all.
    s.get("/api/keys", &[key(s.key("players dashboard"))])
        .await
        .assert_rejected(
            403,
            "insufficient_scope",
            Some(r#"Bearer realm="api", error="insufficient_scope", scope="keys:manage""#),
        );
    let created = s
        .post(
            "/api/keys",
            manager,
            json!({ "name": "partner", "scopes": ["read"] }),
        )
        .await;
    assert_eq!(created.headers["cache-control"], "no-store");
    let token = created.assert_status(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    s.get("/api/players", &[key(&token)])
        .await
        .assert_status(200);
}

#[tokio::test]
async fn bad_input_over_the_wire() {
    let s = start().await;
    let token = s.key("players backend");
    let other = s.key("players dashboard");
    // `/api/scopes` reads both headers (pk keys in X-Api-Key, pl tokens as
    // Bearer); `/api/players` only X-Api-Key.
    let players = |headers: Vec<(&'static str, HeaderValue)>| {
        let s = &s;
        async move { s.get("/api/scopes", &headers).await }
    };

    let invalid_request = [
        vec![raw("x-api-key", b"pk_\xff\xfe")],
        vec![raw("x-api-key", b"")],
        vec![raw("authorization", b"Bearer")],
        vec![raw("authorization", format!("Bearer  {token}").as_bytes())],
        vec![key(token), key(token)],
        vec![bearer(token), bearer(token)],
        vec![key(other), bearer(token)],
        // A tab after the scheme is a malformed Bearer, never "absent"
        // beside an API key.
        vec![
            key(other),
            raw("authorization", format!("Bearer\t{token}").as_bytes()),
        ],
        vec![raw("authorization", format!("Bearer\t{token}").as_bytes())],
        vec![bearer(&format!("pl_{}", "A".repeat(8 * 1024)))],
    ];
    for headers in invalid_request {
        players(headers)
            .await
            .assert_rejected(400, "invalid_request", INVALID_REQUEST);
    }

    players(vec![raw("authorization", b"Basic dXNlcjpwYXNz")])
        .await
        .assert_rejected(401, "missing_credentials", MISSING);

    // Accepted: lower-case scheme, the same token twice, and trailing
    // whitespace, which the HTTP/1 server strips from every header value.
    let pl = s.key("ci uploader");
    let accepted = [
        vec![raw("authorization", format!("bearer {pl}").as_bytes())],
        vec![key(token), bearer(token)],
        vec![raw("x-api-key", format!("{token}  ").as_bytes())],
    ];
    for headers in accepted {
        players(headers).await.assert_status(200);
    }
}

#[tokio::test]
async fn extractors_reject_like_the_layers() {
    use axum::routing::get;
    use keyward::http::{AuthLayer, Principal};
    use tower::ServiceExt;

    async fn strict(principal: Principal) -> String {
        principal.tenant().to_string()
    }
    async fn optional(principal: Option<Principal>) -> String {
        principal.map_or("anonymous".into(), |p| p.tenant().to_string())
    }
    async fn maybe(principal: Option<Principal>) -> String {
        principal.map_or("anonymous".into(), |p| p.tenant().to_string())
    }
    let keyring = app::keyring();
    let token = keyring
        .issue(NewKey::new("pk", "property_1", "x"))
        .await
        .unwrap()
        .token;
    let router = axum::Router::new()
        .route("/strict", get(strict))
        .route("/optional", get(optional))
        .route("/maybe", get(maybe))
        .layer(
            AuthLayer::new(keyring)
                .allow_anonymous(true)
                .realm("players"),
        );
    let call = |path: &str, token: Option<&str>| {
        let mut req = Request::get(path);
        if let Some(token) = token {
            req = req.header("x-api-key", token);
        }
        router
            .clone()
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
    };
    let text = |res: http::Response<axum::body::Body>| async move {
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts, String::from_utf8(bytes.to_vec()).unwrap())
    };

    let (parts, body) = text(call("/strict", None).await.unwrap()).await;
    assert_eq!(parts.status, 401);
    assert_eq!(
        parts.headers["www-authenticate"],
        r#"Bearer realm="players""#
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "missing_credentials");

    let secret = Some(token.expose_secret());
    for path in ["/strict", "/optional", "/maybe"] {
        let (parts, body) = text(call(path, secret).await.unwrap()).await;
        assert_eq!((parts.status.as_u16(), body.as_str()), (200, "property_1"));
    }
    for path in ["/optional", "/maybe"] {
        let (parts, body) = text(call(path, None).await.unwrap()).await;
        assert_eq!((parts.status.as_u16(), body.as_str()), (200, "anonymous"));
    }
}

#[tokio::test]
async fn a_limited_key_gets_429_with_retry_after_over_the_wire() {
    let server = start().await;
    let limited = [key(server.key("limited"))];
    let policy = r#""default";q=3;w=60"#;
    for remaining in (0..app::LIMITED_PER_MINUTE).rev() {
        let reply = server.get("/api/players", &limited).await;
        reply.assert_status(200);
        assert_eq!(reply.headers["ratelimit-policy"], policy);
        let value = reply.headers["ratelimit"].to_str().unwrap();
        assert!(
            value.starts_with(&format!(r#""default";r={remaining};t="#)),
            "{value}"
        );
        assert!(reply.headers.get("retry-after").is_none());
    }
    let reply = server.get("/api/players", &limited).await;
    reply.assert_rejected(429, "rate_limited", None);
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(reply.body["retry_after"], retry_after);
    assert_eq!(reply.headers["ratelimit-policy"], policy);
    assert!(reply.headers["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with(r#""default";r=0;t="#));
    // Other keys have their own budgets.
    let backend = [key(server.key("players backend"))];
    let reply = server.get("/api/players", &backend).await;
    reply.assert_status(200);
    assert_eq!(reply.headers["ratelimit-policy"], r#""default";q=100;w=60"#);
}

#[tokio::test]
async fn the_demo_login_is_throttled_per_account_and_per_ip() {
    let server = start().await;
    let ada = [("x-account", HeaderValue::from_static("Ada@example.com"))];
    for _ in 0..3 {
        let reply = server.post("/api/login", &ada, json!({})).await;
        assert_eq!(reply.assert_status(200)["logged_in"], true);
        assert!(reply.headers.contains_key("ratelimit"));
    }
    let reply = server.post("/api/login", &ada, json!({})).await;
    reply.assert_rejected(429, "rate_limited", None);
    assert_eq!(reply.headers["ratelimit-policy"], r#""default";q=3;w=900"#);
    // 127.0.0.1 has one of its 5 a minute left, for another account.
    let bob = [("x-account", HeaderValue::from_static("bob"))];
    server
        .post("/api/login", &bob, json!({}))
        .await
        .assert_status(200);
    let reply = server.post("/api/login", &bob, json!({})).await;
    reply.assert_rejected(429, "rate_limited", None);
    assert_eq!(reply.headers["ratelimit-policy"], r#""default";q=5;w=60"#);
}

/// Forged tokens from one address: its failure budget (20) of 401s, then
/// 429 before any lookup, keyed by the peer address the server passes in.
#[tokio::test]
async fn forged_tokens_over_the_wire_are_throttled_per_client() {
    let server = start().await;
    let elsewhere = app::keyring();
    let mut forged = Vec::new();
    for _ in 0..21 {
        let issued = elsewhere
            .issue(NewKey::new("pk", "property_demo", "forged"))
            .await
            .unwrap();
        forged.push(issued.token.expose_secret().to_owned());
    }
    for token in &forged[..20] {
        server
            .get("/api/players", &[key(token)])
            .await
            .assert_rejected(401, "invalid_token", INVALID_TOKEN);
    }
    for token in [&forged[20], server.key("players backend")] {
        let reply = server.get("/api/players", &[key(token)]).await;
        reply.assert_rejected(429, "rate_limited", None);
        assert_eq!(reply.headers["retry-after"], "3");
        assert_eq!(reply.headers["ratelimit-policy"], r#""default";q=20;w=60"#);
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let server = start().await;
    let manager = [key(server.key("key manager"))];
    let name = "x".repeat(app::MAX_BODY);
    let reply = server
        .post(
            "/api/functions/create-api-key",
            &manager,
            json!({ "property_id": "property_demo", "name": name }),
        )
        .await;
    reply.assert_rejected(413, "body_too_large", None);
}

/// Short limits for the slow-client tests.
fn tight(header_read_timeout: Duration, max_connections: usize) -> serve::Limits {
    serve::Limits {
        header_read_timeout,
        request_timeout: Duration::from_millis(600),
        max_connections,
        shutdown_grace: Duration::from_secs(1),
        ..serve::Limits::default()
    }
}

/// Reads until the server closes the connection or `within` passes;
/// returns what it read and when it ended (`None`: still open).
async fn read_until_closed(
    stream: &mut TcpStream,
    within: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (read, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (read, Some(start.elapsed())),
            Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
        }
    }
}

/// A slowloris: a request head trickled a byte every 50 ms never completes
/// its head, and the server closes the connection at the header read
/// timeout (300 ms here), well before the trickle would end.
#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    let timeout = Duration::from_millis(300);
    let server = start_with(tight(timeout, 16)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let start = Instant::now();
    let head = format!(
        "GET /api/players HTTP/1.1\r\nHost: x\r\nX-Api-Key: {}\r\nX-Slow: {}\r\n\r\n",
        server.key("players backend"),
        "a".repeat(200)
    );
    let mut closed = None;
    for byte in head.as_bytes() {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = Some(start.elapsed());
                break;
            }
            Ok(Ok(n)) => panic!(
                "answered a partial head: {}",
                String::from_utf8_lossy(&buf[..n])
            ),
        }
        assert!(start.elapsed() < Duration::from_secs(5), "never cut off");
    }
    let closed = closed.expect("the whole head was accepted: the trickle was not cut off");
    assert!(
        closed >= timeout,
        "closed after {closed:?}, before the timeout"
    );
    assert!(
        closed < timeout + Duration::from_secs(1),
        "closed after {closed:?}"
    );

    // An idle connection that sends nothing is closed at the timeout too.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let (read, closed) = read_until_closed(&mut idle, Duration::from_secs(3)).await;
    let closed = closed.expect("an idle connection stays open");
    assert!(closed >= timeout - Duration::from_millis(50), "{closed:?}");
    assert!(
        read.is_empty() || read.starts_with(b"HTTP/1.1 408"),
        "{read:?}"
    );

    // A client that sends its head in time is served.
    server
        .get("/api/players", &[key(server.key("players backend"))])
        .await
        .assert_status(200);
}

/// A body trickled past the request timeout gets 408 and the connection
/// ends; the handler never sees a partial body.
#[tokio::test]
async fn a_client_trickling_its_body_gets_408() {
    let server = start_with(tight(Duration::from_secs(5), 16)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/functions/create-api-key HTTP/1.1\r\nHost: x\r\nX-Api-Key: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\"",
        server.key("key manager")
    );
    let start = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let (read, _) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    let answered = start.elapsed();
    let text = String::from_utf8_lossy(&read);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(answered >= Duration::from_millis(600), "{answered:?}");
    assert!(answered < Duration::from_secs(3), "{answered:?}");
}

/// With room for two connections, a third waits to be accepted until one
/// of the first two closes, then is served.
#[tokio::test]
async fn connections_are_bounded() {
    let server = start_with(tight(Duration::from_secs(10), 2)).await;
    let first = TcpStream::connect(server.addr).await.unwrap();
    let _second = TcpStream::connect(server.addr).await.unwrap();
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(b"GET /api/players HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (read, closed) = read_until_closed(&mut third, Duration::from_millis(400)).await;
    assert!(
        read.is_empty() && closed.is_none(),
        "served past the bound: {read:?}"
    );

    drop(first);
    let (read, _) = read_until_closed(&mut third, Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&read);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
}

/// A request the API answers at once (401, no key), for pipelining.
const PIPELINED: &[u8] = b"GET /api/players HTTP/1.1\r\nHost: x\r\n\r\n";

/// Whether the server has closed `stream`, found without reading from it
/// (a slow reader must not drain what it was sent): a write after the
/// server's close fails (the server answers it with a reset). The probe is
/// one more request, so a server still reading sees nothing odd.
async fn closed_without_reading(stream: &TcpStream) -> bool {
    for _ in 0..2 {
        match stream.try_write(PIPELINED) {
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    false
}

/// Polls [`closed_without_reading`] until it holds or `within` passes:
/// when the server closed the connection, after `since`.
async fn wait_closed(stream: &TcpStream, since: Instant, within: Duration) -> Option<Duration> {
    while since.elapsed() < within {
        if closed_without_reading(stream).await {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// A listener whose connections have small send buffers (accepted sockets
/// inherit them on Linux), so a client that stops reading stalls the
/// server's writes after a few responses.
fn small_send_buffers() -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    socket.listen(128).unwrap()
}

/// A client with a receive buffer of `size` bytes (as `SO_RCVBUF` takes
/// it), connected from `from`.
async fn reader(from: &str, to: SocketAddr, size: u32) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(size).unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// A slow reader: pipelined requests, no response ever read. The server's
/// writes stall and, with no progress for the write timeout, the
/// connection is closed; every other timer is far away, so only the write
/// timeout can end it. With both connection slots held by such readers, a
/// well-behaved client is served once they are cut off.
#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_at_the_write_timeout() {
    let write_timeout = Duration::from_millis(500);
    let limits = serve::Limits {
        header_read_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(30),
        write_timeout,
        max_connection_age: Duration::from_secs(60),
        max_connections: 2,
        ..serve::Limits::default()
    };
    let server = start_on(small_send_buffers(), limits).await;
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut stream = reader("127.0.0.1", server.addr, 1024).await;
        // 300 responses (about 90 KB) can not fit the buffers: the
        // server's writes stall within milliseconds of this.
        stream.write_all(&PIPELINED.repeat(300)).await.unwrap();
        readers.push((stream, Instant::now()));
    }
    let mut victim = TcpStream::connect(server.addr).await.unwrap();
    victim
        .write_all(b"GET /api/players HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let slack = Duration::from_millis(1500);
    for (stream, since) in &readers {
        let closed = wait_closed(stream, *since, write_timeout + slack).await;
        let closed = closed.expect("a client that never reads kept its connection");
        assert!(closed >= write_timeout, "closed after {closed:?}");
    }
    let (read, _) = read_until_closed(&mut victim, slack).await;
    let text = String::from_utf8_lossy(&read);
    assert!(
        text.starts_with("HTTP/1.1 401"),
        "victim not served: {text:?}"
    );

    // A slow but steady reader (what has arrived, every 100 ms: the
    // server's writes stall, but never for the write timeout) gets every
    // answer.
    let mut steady = reader("127.0.0.1", server.addr, 16 * 1024).await;
    let mut requests = PIPELINED.repeat(999);
    requests
        .extend_from_slice(b"GET /api/players HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    steady.write_all(&requests).await.unwrap();
    let start = Instant::now();
    let mut read = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match tokio::time::timeout(Duration::from_secs(2), steady.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer for 2 s"),
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never finished");
    }
    let answers = String::from_utf8_lossy(&read)
        .matches("HTTP/1.1 401")
        .count();
    assert_eq!(answers, 1000, "cut off after {:?}", start.elapsed());
}

/// A connection takes at most `max_requests_per_connection` requests (the
/// last answer says `Connection: close`), an idle one is closed at its age,
/// and one still busy at its age (a client reading a few bytes at a time,
/// never stalled for the write timeout) is dropped `request_timeout` later.
#[tokio::test]
async fn connections_are_recycled_by_request_count_and_age() {
    let age = Duration::from_millis(500);
    let request_timeout = Duration::from_millis(600);
    let limits = serve::Limits {
        header_read_timeout: Duration::from_secs(30),
        request_timeout,
        write_timeout: Duration::from_secs(30),
        max_connection_age: Duration::from_secs(60),
        max_requests_per_connection: 3,
        ..serve::Limits::default()
    };
    let server = start_with(limits).await;

    // Five pipelined requests: three answers, then the server closes.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(&PIPELINED.repeat(5)).await.unwrap();
    let (read, closed) = read_until_closed(&mut stream, Duration::from_secs(2)).await;
    let text = String::from_utf8_lossy(&read).to_ascii_lowercase();
    assert_eq!(text.matches("http/1.1 401").count(), 3, "{text}");
    assert_eq!(text.matches("connection: close").count(), 1, "{text}");
    assert!(closed.is_some(), "open after its last request: {text}");

    let limits = serve::Limits {
        max_connection_age: age,
        max_requests_per_connection: 1000,
        ..limits
    };
    let server = start_on(small_send_buffers(), limits).await;

    // Idle after one request (keep-alive): closed at its age.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(PIPELINED).await.unwrap();
    let (read, closed) = read_until_closed(&mut idle, Duration::from_secs(3)).await;
    assert!(read.starts_with(b"HTTP/1.1 401"), "{read:?}");
    let closed = closed.expect("an idle connection outlived its age");
    assert!(
        closed >= age && closed < age + Duration::from_secs(1),
        "{closed:?}"
    );

    // A slow drip reader: 32 bytes every 50 ms, never stalling a write for
    // long, with more answers queued than it reads in seconds.
    let mut drip = reader("127.0.0.1", server.addr, 1024).await;
    let start = Instant::now();
    drip.write_all(&PIPELINED.repeat(300)).await.unwrap();
    let mut closed = None;
    let mut buf = [0u8; 32];
    while start.elapsed() < age + request_timeout + Duration::from_secs(2) {
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), drip.read(&mut buf)).await
        {
            closed = Some(start.elapsed());
            break;
        }
        if closed_without_reading(&drip).await {
            closed = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed = closed.expect("a drip reader outlived its age and request timeout");
    assert!(closed >= age + request_timeout, "{closed:?}");
}

/// One address holds at most `max_connections_per_ip` connections: the
/// next from it is closed unanswered while another address (127.0.0.2, on
/// the loopback network) is served, and a slot freed is taken again.
#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    let limits = serve::Limits {
        header_read_timeout: Duration::from_secs(30),
        max_connections: 16,
        max_connections_per_ip: 2,
        ..serve::Limits::default()
    };
    let server = start_with(limits).await;
    let request = b"GET /api/players HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let connect_from = |from: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(server.addr).await.unwrap()
    };
    let first = connect_from("127.0.0.1").await;
    let _second = connect_from("127.0.0.1").await;
    let answer = |mut stream: TcpStream| async move {
        // A refused connection may be closed before the request is sent.
        let _ = stream.write_all(request).await;
        let (read, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
        (String::from_utf8_lossy(&read).into_owned(), closed)
    };
    let (text, closed) = answer(connect_from("127.0.0.1").await).await;
    assert!(
        text.is_empty() && closed.is_some(),
        "a third connection: {text:?}"
    );
    let (text, _) = answer(connect_from("127.0.0.2").await).await;
    assert!(
        text.starts_with("HTTP/1.1 401"),
        "another address: {text:?}"
    );

    // A freed slot is the address's again (once the server sees the close).
    drop(first);
    let start = Instant::now();
    loop {
        let (text, _) = answer(connect_from("127.0.0.1").await).await;
        if text.starts_with("HTTP/1.1 401") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // IPv6 clients count by /64; IPv4-mapped addresses as IPv4.
    let client = |ip: &str| serve::client_of(ip.parse().unwrap());
    assert_eq!(client("2001:db8:1:2::1"), client("2001:db8:1:2:ffff::9"));
    assert_ne!(client("2001:db8:1:2::1"), client("2001:db8:1:3::1"));
    assert_eq!(client("::ffff:192.0.2.7"), client("192.0.2.7"));
    assert_ne!(client("192.0.2.7"), client("192.0.2.8"));
}

/// On shutdown the server stops accepting, an idle keep-alive connection
/// is closed at once, and `serve` returns without waiting out its grace
/// period.
#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = serve::Limits {
        shutdown_grace: Duration::from_secs(10),
        ..serve::Limits::default()
    };
    let served = tokio::spawn(serve::serve(
        listener,
        app::router(app::keyring()),
        limits,
        async move {
            let _ = stopped.await;
        },
    ));
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(PIPELINED).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 401"));

    let start = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), served)
        .await
        .expect("serve waited for an idle connection")
        .unwrap();
    let (_, closed) = read_until_closed(&mut idle, Duration::from_millis(500)).await;
    assert!(closed.is_some(), "the idle connection is still open");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

/// The unauthenticated baseline needs its loudly named flag and a loopback
/// address; without the flag the server serves the API, where every route
/// needs a key.
#[tokio::test]
async fn the_default_server_has_no_unauthenticated_route() {
    let none = std::iter::empty::<String>;
    let options = serve::options(none(), None).unwrap();
    assert_eq!(options.mode, serve::Mode::Api);
    assert_eq!(options.addr, serve::DEFAULT_ADDR.parse().unwrap());
    let flag = || [serve::BASELINE_FLAG.to_owned()];
    for addr in ["0.0.0.0:3000", "[::]:3000", "192.0.2.1:80"] {
        let err = serve::options(flag(), Some(addr.into())).unwrap_err();
        assert!(err.contains("not a loopback address"), "{err}");
    }
    for addr in [None, Some("127.0.0.1:0".into()), Some("[::1]:0".into())] {
        let options = serve::options(flag(), addr).unwrap();
        assert_eq!(options.mode, serve::Mode::UnauthenticatedBaseline);
    }
    // Anything else is refused, not ignored: a typo of the flag included.
    for arg in ["--unauthenticated", "--bench", "baseline"] {
        assert!(serve::options([arg.to_owned()], None).is_err(), "{arg}");
    }
    assert!(serve::options(none(), Some("localhost:3000".into())).is_err());

    let server = start().await;
    for (method, path) in [
        (Method::GET, "/api/players"),
        (Method::POST, "/api/players"),
        (Method::GET, "/api/keys"),
        (Method::GET, "/api/scopes"),
        (Method::GET, "/api/games"),
    ] {
        server.send(method, path, &[], None).await.assert_rejected(
            401,
            "missing_credentials",
            MISSING,
        );
    }
}
