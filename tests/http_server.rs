//! The example server's router on a real socket (127.0.0.1, ephemeral port),
//! driven by a real HTTP/1 client: both products end to end, and bad input as
//! it arrives over the wire.

#[allow(dead_code)]
#[path = "../examples/server/app.rs"]
mod app;

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use keyward::{Keyring, NewKey};
use serde_json::{json, Value};

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
    let keyring = app::keyring();
    let keys = app::demo_keys(&keyring)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.name, k.token))
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app::router(keyring.clone());
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
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
    let players = s.get("/api/players", &[bearer(dashboard)]).await;
    players.assert_status(200);
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
    // A PlayableLabs token holds no PlayerOS scope.
    s.get("/api/players", &[bearer(s.key("ci uploader"))])
        .await
        .assert_rejected(
            403,
            "insufficient_scope",
            Some(r#"Bearer realm="api", error="insufficient_scope", scope="read""#),
        );
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

    s.get("/api/players", &[bearer(&token)])
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
    s.get("/api/players", &[bearer(&token)])
        .await
        .assert_rejected(401, "token_revoked", INVALID_TOKEN);

    let foreign = s
        .keyring
        .issue(NewKey::new("pk", "property_other", "theirs"))
        .await
        .unwrap();
    for id in ["key_doesnotexist", "garbage id", foreign.info.id.as_str()] {
        s.post(revoke, manager, json!({ "id": id }))
            .await
            .assert_rejected(404, "not_found", None);
    }
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

#[tokio::test]
async fn bad_input_over_the_wire() {
    let s = start().await;
    let token = s.key("players backend");
    let other = s.key("players dashboard");
    let players = |headers: Vec<(&'static str, HeaderValue)>| {
        let s = &s;
        async move { s.get("/api/players", &headers).await }
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
    let accepted = [
        vec![raw("authorization", format!("bearer {token}").as_bytes())],
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
    use keyward::http::{AuthLayer, MaybePrincipal, Principal};
    use tower::ServiceExt;

    async fn strict(principal: Principal) -> String {
        principal.tenant().to_string()
    }
    async fn optional(principal: Option<Principal>) -> String {
        principal.map_or("anonymous".into(), |p| p.tenant().to_string())
    }
    async fn maybe(MaybePrincipal(principal): MaybePrincipal) -> String {
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
