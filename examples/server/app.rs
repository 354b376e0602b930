//! The example server's application: both products' catalogs, demo keys and
//! the axum router. `tests/http_server.rs` drives the same router over a real
//! socket.
//!
//! Errors of the management endpoints have the shape of the layers'
//! rejections, `{"error": code, "message": text}`: 400 `invalid_body`
//! (unparsable body, bad name, property id or expiry), 400 `invalid_scope`
//! (a scope the PlayerOS catalog does not declare), 404 `not_found` (no key
//! with this id in the caller's tenant).
//!
//! Bodies over [`MAX_BODY`] bytes are 413 `body_too_large`.
//!
//! The tokens page (`GET /tokens`, [`page`]) logs in with the demo login,
//! whose answer carries a dashboard JWT signed by the development issuer
//! ([`issuer`]), and manages the `org_demo` tenant's `pl_` tokens through
//! `/api/tokens` (`keyward::manage`), where the JWT is accepted as
//! `Authorization: Bearer` by a `keyward::jwt::JwtAuthenticator`. The
//! issuer's key set is public at `GET /.well-known/jwks.json`.
//!
//! Rate limits: every key's own limit (100 a minute by default; the demo key
//! "limited" has 3) through the `AuthLayer`'s default limiter, the
//! `AuthLayer`'s failed-authentication throttle (20 failures per client, then
//! 20 a minute, keyed by the peer address from `ConnectInfo`), and a
//! `ThrottleLayer` on the demo login `POST /api/login`: 5 attempts a minute
//! per client IP and 3 per 15 minutes per account, the account named by the
//! `X-Account` header (a JSON body field would need the body buffered before
//! the throttle).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, Path, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::HeaderName;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use keyward::http::{
    AuthLayer, Principal, Rejection, RequireScopesLayer, Source, ThrottleLayer, WouldDeny,
    SOON_SCOPES_HEADER,
};
use keyward::manage::{ManageRouter, ScopePolicy};
use keyward::ratelimit::Quota;
use keyward::{
    Expiry, IssueError, KeyId, KeyInfo, KeyKind, Keyring, ManageError, MemoryStore, NewKey,
    RateLimit, ScopeCatalog, ScopeStatus,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[path = "issuer.rs"]
pub(crate) mod issuer;
#[path = "page.rs"]
pub(crate) mod page;
#[path = "webhooks.rs"]
pub(crate) mod webhooks;

use issuer::DevIssuer;
use webhooks::Webhooks;

/// PlayerOS: `read` and `write` (enforced, `write` implies `read`) and
/// `keys:manage` for the key management endpoints.
pub(crate) fn player_os() -> ScopeCatalog {
    ScopeCatalog::builder()
        .scope("read", "Read players and events", ScopeStatus::Enforced)
        .scope("write", "Create and change players", ScopeStatus::Enforced)
        .scope(
            "keys:manage",
            "Create, list and revoke API keys",
            ScopeStatus::Enforced,
        )
        .implies("write", "read")
        .build()
        .expect("a valid catalog")
}

/// PlayableLabs: a `resource:action` grid where only `versions:write` and
/// `assets:write` are enforced yet.
pub(crate) fn playable_labs() -> ScopeCatalog {
    let soon = ScopeStatus::Soon;
    let enforced = ScopeStatus::Enforced;
    ScopeCatalog::builder()
        .scope("games:read", "List and read games", soon)
        .scope("games:write", "Create and edit games", soon)
        .scope("games:delete", "Delete games", soon)
        .scope("versions:read", "Read game versions", soon)
        .scope("versions:write", "Upload game versions", enforced)
        .scope("assets:read", "Read assets", soon)
        .scope("assets:write", "Upload assets", enforced)
        .scope("exports:read", "Read exports", soon)
        .scope("exports:create", "Create exports", soon)
        .build()
        .expect("a valid catalog")
}

/// An in-memory keyring with `pk_` (PlayerOS, default `read` + `write`) and
/// `pl_` (PlayableLabs) keys.
// Not the server's own (its events go out as webhooks): the tests', the
// fuzz targets' and `examples/hot_path.rs`.
#[allow(dead_code)]
pub(crate) fn keyring() -> Keyring {
    keyring_on(MemoryStore::new())
}

/// The same keyring on `store` (`tests/tokens_api.rs`).
#[allow(dead_code)]
pub(crate) fn keyring_on(store: impl keyward::KeyStore) -> Keyring {
    builder_on(store).build().expect("a valid keyring")
}

/// The same keyring on `store`, its lifecycle events delivered as signed
/// webhooks by `sink` ([`webhooks`]).
pub(crate) fn keyring_sending(
    store: impl keyward::KeyStore,
    sink: keyward::webhooks::WebhookSink,
) -> Keyring {
    builder_on(store)
        .events(sink)
        .build()
        .expect("a valid keyring")
}

fn builder_on(
    store: impl keyward::KeyStore,
) -> keyward::KeyringBuilder<std::sync::Arc<dyn keyward::KeyStore>> {
    Keyring::builder()
        .store(store)
        .kind(
            KeyKind::new("pk", player_os())
                .and_then(|k| k.default_scopes(["read", "write"]))
                .expect("a valid kind"),
        )
        .kind(KeyKind::new("pl", playable_labs()).expect("a valid kind"))
        // Last-used writes run beside the requests, never inside one.
        .spawn_last_used_writes(|write| {
            tokio::spawn(write);
        })
        // A quiet key's last use is written within the interval, not at its
        // next use.
        .last_used_timer(tokio::time::sleep)
}

/// A demo key, printed once at start.
#[derive(Debug, Serialize)]
pub(crate) struct DemoKey {
    /// What it is for.
    pub(crate) name: String,
    /// The token, shown once.
    pub(crate) token: String,
    /// Its scopes.
    pub(crate) scopes: Vec<String>,
    /// Its tenant.
    pub(crate) tenant: String,
}

/// The rate limit of the demo key "limited".
pub(crate) const LIMITED_PER_MINUTE: u32 = 3;

/// Issues the demo keys: PlayerOS keys for `property_demo` (read/write,
/// read-only, key manager (read, write and `keys:manage`: it may mint keys
/// up to read/write through `/api/keys`), and "limited", read-only at 3
/// requests a minute),
/// PlayableLabs tokens for `org_demo`, and two read-only keys for
/// `property_loadtest`: `loadtest`, unlimited, and `loadtest-limited`, with a
/// limit a load test never reaches.
pub(crate) async fn demo_keys(keyring: &Keyring) -> Result<Vec<DemoKey>, IssueError> {
    let limited = RateLimit::per_minute(LIMITED_PER_MINUTE).expect("non-zero");
    let default = RateLimit::default();
    let specs: [(&str, &str, &str, &[&str], RateLimit); 6] = [
        (
            "pk",
            "property_demo",
            "players backend",
            &["read", "write"],
            default,
        ),
        (
            "pk",
            "property_demo",
            "players dashboard",
            &["read"],
            default,
        ),
        (
            "pk",
            "property_demo",
            "key manager",
            &["read", "write", "keys:manage"],
            default,
        ),
        ("pk", "property_demo", "limited", &["read"], limited),
        (
            "pl",
            "org_demo",
            "ci uploader",
            &["versions:write", "assets:write"],
            default,
        ),
        ("pl", "org_demo", "games viewer", &["games:read"], default),
    ];
    let mut keys = Vec::new();
    for (kind, tenant, name, scopes, rate_limit) in specs {
        let new = NewKey::new(kind, tenant, name)
            .scopes(scopes.iter().copied())
            .rate_limit(rate_limit);
        let issued = keyring.issue(new).await?;
        keys.push(DemoKey {
            name: name.to_owned(),
            token: issued.token.expose_secret().to_owned(),
            scopes: issued.info.scopes().iter().map(|s| s.to_string()).collect(),
            tenant: tenant.to_owned(),
        });
    }
    // For `scripts/load.sh`: read-only, one unlimited and one with a limit
    // the load never reaches (the default path: the limiter checked and its
    // headers sent on every request). Their own tenant keeps the demo
    // property's key list as it was.
    let never_reached = RateLimit::per_minute(u32::MAX).expect("non-zero");
    for (name, rate_limit) in [
        ("loadtest", RateLimit::Unlimited),
        ("loadtest-limited", never_reached),
    ] {
        let issued = keyring
            .issue(
                NewKey::new("pk", "property_loadtest", name)
                    .scopes(["read"])
                    .rate_limit(rate_limit),
            )
            .await?;
        keys.push(DemoKey {
            name: name.to_owned(),
            token: issued.token.expose_secret().to_owned(),
            scopes: vec!["read".to_owned()],
            tenant: "property_loadtest".to_owned(),
        });
    }
    Ok(keys)
}

fn scopes(list: &[&str]) -> RequireScopesLayer {
    RequireScopesLayer::all(list.iter().copied()).expect("valid scopes")
}

/// The largest request body the management endpoints read, in bytes.
pub(crate) const MAX_BODY: usize = 16 * 1024;

/// The client's address, from axum's `ConnectInfo` (the server inserts it;
/// with `axum::serve`, serve
/// `into_make_service_with_connect_info::<SocketAddr>()`).
pub(crate) fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    let ConnectInfo(addr) = parts.extensions.get::<ConnectInfo<SocketAddr>>()?;
    Some(addr.ip())
}

/// The demo login's throttle: per client IP and per account (`X-Account`,
/// lower-cased).
pub(crate) fn login_throttle() -> ThrottleLayer {
    ThrottleLayer::new()
        .peer_ip(peer_ip)
        .per_ip(Quota::per_minute(5).expect("non-zero"))
        .per_account(
            Quota::new(3, Duration::from_secs(15 * 60)).expect("a valid quota"),
            |parts| {
                let account = parts.headers.get("x-account")?.to_str().ok()?;
                Some(account.trim().to_ascii_lowercase())
            },
        )
}

/// The router's state: the keyring, the development issuer of the demo
/// login and the webhook inbox. Behind one `Arc`: axum clones the state for
/// every request, so a clone is one reference count.
#[derive(Clone)]
pub(crate) struct AppState(Arc<AppParts>);

pub(crate) struct AppParts {
    keyring: Keyring,
    issuer: DevIssuer,
    webhooks: Webhooks,
}

impl FromRef<AppState> for Keyring {
    fn from_ref(state: &AppState) -> Keyring {
        state.0.keyring.clone()
    }
}

impl FromRef<AppState> for DevIssuer {
    fn from_ref(state: &AppState) -> DevIssuer {
        state.0.issuer.clone()
    }
}

/// The API: every route behind [`AuthLayer`] (which enforces each key's
/// rate limit), each with its requirement; the throttled demo login; the
/// token management API for dashboard JWTs; the development issuer's key
/// set; and the tokens page.
/// The handlers get the keyring as router state (no per-request
/// `Extension` layer).
// The tests', the fuzz targets' and `examples/hot_path.rs`.
#[allow(dead_code)]
pub(crate) fn router(keyring: Keyring) -> Router {
    router_with(keyring, Webhooks::new())
}

/// The API, with `webhooks`' receiver at [`webhooks::RECEIVER_PATH`] (no
/// key: the signature authenticates) and its inbox at
/// `GET /api/webhooks/received` (for keys holding `keys:manage`).
pub(crate) fn router_with(keyring: Keyring, webhooks: Webhooks) -> Router {
    let manage = || scopes(&["keys:manage"]);
    let issuer = DevIssuer::new(issuer::SESSION_TTL);
    // One base layer: the product layers derived from it share its failure
    // throttle (per client address) and its rate limiter.
    let base = AuthLayer::new(keyring.clone())
        .peer_ip(peer_ip)
        .soon_scopes_header(HeaderName::from_static(SOON_SCOPES_HEADER));
    let accept = |layer: AuthLayer, kind: &str, source: Source| {
        layer.accept(kind, [source]).expect("a kind of the keyring")
    };
    // PlayerOS: `pk_` keys in X-Api-Key only.
    let player_os = Router::new()
        .route(
            "/api/players",
            get(list_players.layer(scopes(&["read"])))
                .post(create_player.layer(scopes(&["write"]))),
        )
        .route(
            "/api/functions/create-api-key",
            post(create_api_key.layer(manage())),
        )
        .route(
            "/api/functions/revoke-api-key",
            post(revoke_api_key.layer(manage())),
        )
        .route(
            "/api/webhooks/received",
            get(received_webhooks.layer(manage())),
        )
        // The library's key management for `pk_` keys: list, create, show,
        // revoke, rotate and the grid, for keys holding `keys:manage`.
        .nest("/api/keys", keys_router(&keyring))
        .layer(accept(base.clone(), "pk", Source::api_key()));
    // PlayableLabs: `pl_` tokens as Bearer only.
    let playable_labs = Router::new()
        .route("/api/games", get(list_games.layer(scopes(&["games:read"]))))
        .route(
            "/api/games/{id}/versions",
            post(upload_version.layer(scopes(&["versions:write"]))),
        )
        .route(
            "/api/assets",
            post(upload_asset.layer(scopes(&["assets:write"]))),
        )
        .layer(accept(base.clone(), "pl", Source::bearer()));
    // The permission grid of the caller's product: either kind, each from
    // its own header.
    let grid = Router::new()
        .route("/api/scopes", get(scope_grid))
        .layer(accept(
            accept(base.clone(), "pk", Source::api_key()),
            "pl",
            Source::bearer(),
        ));
    // Dashboard JWTs arrive as `Authorization: Bearer`; the routes require
    // `tokens:manage`, which only dashboard users hold. No key of either
    // kind is accepted there (401 before any lookup or quota).
    let tokens_auth = base.accept_no_kinds().external(issuer.authenticator());
    Router::new()
        .merge(player_os)
        .merge(playable_labs)
        .merge(grid)
        .nest("/api/tokens", tokens_router(&keyring).layer(tokens_auth))
        // No authentication: the login needs no key, the page no credential.
        .route("/api/login", post(login).layer(login_throttle()))
        .route(issuer::JWKS_PATH, get(jwks))
        .merge(page::router())
        .merge(webhooks.receiver())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(AppState(Arc::new(AppParts {
            keyring,
            issuer,
            webhooks,
        })))
}

/// `/api/keys`: the library's key management for `pk_` keys, managed by
/// keys holding `keys:manage` (never minting one wider than themselves, nor
/// another manager).
fn keys_router(keyring: &Keyring) -> Router<AppState> {
    let policy = ScopePolicy::new("keys:manage").expect("a valid scope");
    ManageRouter::new(keyring.clone())
        .kind("pk")
        .expect("a kind of the keyring")
        .policy(policy)
        .into_router()
}

/// `/api/tokens`: the library's key management for `pl_` tokens, managed
/// by dashboard users (external principals holding `tokens:manage`).
fn tokens_router(keyring: &Keyring) -> Router<AppState> {
    let policy = ScopePolicy::new(issuer::MANAGE_TOKENS)
        .expect("a valid scope")
        .accept_external(true);
    ManageRouter::new(keyring.clone())
        .kind("pl")
        .expect("a kind of the keyring")
        .policy(policy)
        .into_router()
}

/// The longest account name the demo login keeps, in bytes (the page's
/// field allows as many characters).
pub(crate) const MAX_ACCOUNT_LEN: usize = 200;

/// A demo login: no password check, it only shows the throttle. Answers a
/// dashboard JWT for `org_demo` in `"session"` (a bearer credential, so
/// `no-store`). The account name is 1 to [`MAX_ACCOUNT_LEN`] bytes, not
/// only spaces: it becomes the token's subject, which every request
/// carries, so its size is bounded.
async fn login(State(issuer): State<DevIssuer>, headers: HeaderMap) -> Response {
    let account = headers
        .get("x-account")
        .and_then(|v| v.to_str().ok())
        .filter(|a| a.len() <= MAX_ACCOUNT_LEN && !a.trim().is_empty());
    match account {
        Some(account) => {
            let session = issuer.login(account);
            let body = json!({
                "account": account,
                "logged_in": true,
                "session": session,
                "token_type": "jwt",
                "expires_in": issuer::SESSION_TTL.as_secs(),
                "tenant": issuer::DASHBOARD_TENANT,
            });
            let no_store = [(axum::http::header::CACHE_CONTROL, "no-store")];
            (no_store, Json(body)).into_response()
        }
        None => error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "name the account (1 to 200 bytes) in the X-Account header",
        ),
    }
}

/// The development issuer's JWKS (public, as an issuer's is).
async fn jwks(State(issuer): State<DevIssuer>) -> Response {
    let headers = [
        (axum::http::header::CONTENT_TYPE, "application/json"),
        (axum::http::header::CACHE_CONTROL, "max-age=3600"),
    ];
    (headers, issuer.jwks().to_owned()).into_response()
}

/// `GET /api/players` with no authentication and no scope check: the
/// baseline of `scripts/load.sh`, served only with the server's
/// `--unauthenticated-load-test-baseline` flag on a loopback address.
pub(crate) fn bare_router() -> Router {
    Router::new().route(
        "/api/players",
        get(|| async { players("property_loadtest") }),
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": code, "message": message }))).into_response()
}

fn store_error() -> Response {
    Rejection::AuthUnavailable.into_response()
}

/// The response to a body that could not be read: 413 `body_too_large` past
/// [`MAX_BODY`], else `invalid_body` with the extractor's status.
fn body_error(rejection: &BytesRejection) -> Response {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the body is larger than 16 KiB",
        ),
        status => error(status, "invalid_body", "the body could not be read"),
    }
}

/// Picks fields of a key's serialized [`KeyInfo`]: never a hash or a token.
fn key_view(info: &KeyInfo, fields: &[&str]) -> Value {
    let all = serde_json::to_value(info).unwrap_or_default();
    fields
        .iter()
        .map(|f| (f.to_string(), all.get(*f).cloned().unwrap_or(Value::Null)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

async fn list_players(principal: Principal) -> Json<Value> {
    players(principal.tenant().as_str())
}

fn players(property_id: &str) -> Json<Value> {
    Json(json!({
        "property_id": property_id,
        "players": [{ "id": "player_1", "name": "Ada" }, { "id": "player_2", "name": "Linus" }],
    }))
}

async fn create_player(principal: Principal) -> (StatusCode, Json<Value>) {
    let body = json!({ "property_id": principal.tenant().as_str(), "id": "player_3" });
    (StatusCode::CREATED, Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    property_id: String,
    name: String,
    scopes: Option<Vec<String>>,
    expires_in: Option<String>,
}

/// Issues a `pk_` key for the caller's property. `keys:manage` administers
/// the property's data keys (`read`, `write`, the default both), but cannot
/// mint another `keys:manage` key: a management key must not be able to
/// outlive its own revocation through a copy of itself. The response carries
/// the only copy of the token, so it is marked `no-store`.
async fn create_api_key(
    principal: Principal,
    State(keyring): State<Keyring>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_error(&rejection),
    };
    let Ok(req) = serde_json::from_slice::<CreateKey>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "expected {\"property_id\", \"name\", \"scopes\"?, \"expires_in\"?}",
        );
    };
    if req.property_id != principal.tenant().as_str() {
        return Rejection::TenantMismatch.into_response();
    }
    let expiry = match req.expires_in.as_deref().map(str::parse::<Expiry>) {
        None => Expiry::Never,
        Some(Ok(expiry)) => expiry,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "expires_in must be one of 30d, 90d, 1y, never",
            )
        }
    };
    let mut new = NewKey::new("pk", &req.property_id, &req.name).expires(expiry);
    if let Some(scopes) = req.scopes {
        if scopes.iter().any(|s| s == "keys:manage") {
            return error(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "keys:manage cannot be granted through this endpoint",
            );
        }
        new = new.scopes(scopes);
    }
    match keyring.issue(new).await {
        Ok(issued) => {
            let mut view = key_view(
                &issued.info,
                &["id", "display_prefix", "scopes", "expires_at"],
            );
            view["token"] = issued.token.expose_secret().into();
            let no_store = [(axum::http::header::CACHE_CONTROL, "no-store")];
            (StatusCode::CREATED, no_store, Json(view)).into_response()
        }
        Err(IssueError::Scope(err)) => {
            error(StatusCode::BAD_REQUEST, "invalid_scope", &err.to_string())
        }
        Err(IssueError::Store(_)) => store_error(),
        Err(err) => error(StatusCode::BAD_REQUEST, "invalid_body", &err.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeKey {
    id: String,
}

/// `GET /api/webhooks/received`: the key events of the caller's tenant this
/// server's webhook receiver verified, oldest first.
async fn received_webhooks(State(state): State<AppState>, principal: Principal) -> Json<Value> {
    Json(json!({ "events": state.0.webhooks.received(principal.tenant().as_str()) }))
}

async fn revoke_api_key(
    principal: Principal,
    State(keyring): State<Keyring>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_error(&rejection),
    };
    let Ok(req) = serde_json::from_slice::<RevokeKey>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_body", "expected {\"id\"}");
    };
    let not_found = || error(StatusCode::NOT_FOUND, "not_found", "no such key");
    let Some(id) = KeyId::parse(&req.id) else {
        return not_found();
    };
    // Another tenant's key is as good as absent: no oracle for ids.
    match keyring.revoke_in(principal.tenant(), &id).await {
        Ok(info) => Json(key_view(&info, &["id", "revoked_at"])).into_response(),
        Err(ManageError::NotFound) => not_found(),
        Err(_) => store_error(),
    }
}

/// The permission grid of the caller's product.
async fn scope_grid(principal: Principal) -> Json<Value> {
    Json(serde_json::to_value(principal.catalog()).unwrap_or_default())
}

async fn list_games(principal: Principal, would_deny: Option<Extension<WouldDeny>>) -> Json<Value> {
    // `games:read` is "soon": the request passes, and we tell the caller.
    let missing: Vec<String> = would_deny
        .map(|Extension(w)| w.missing().iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    Json(json!({
        "organization_id": principal.tenant().as_str(),
        "games": [{ "id": "game_1", "title": "Tiny Tower" }],
        "would_deny": missing,
    }))
}

async fn upload_version(Path(id): Path<String>) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({ "game_id": id, "version": 2 })),
    )
}

async fn upload_asset() -> (StatusCode, Json<Value>) {
    (StatusCode::CREATED, Json(json!({ "id": "asset_1" })))
}
