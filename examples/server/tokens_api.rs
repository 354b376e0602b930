//! TEMPORARY: `/api/tokens`, the management API of PlayableLabs (`pl_`)
//! tokens for dashboard sessions, written to the management contract
//! (`keyward::manage`, issue 12) until the library router exists. At merge
//! this file goes away and `app.rs` mounts the library router at the same
//! path behind the same `AuthLayer`; `tests/tokens_api.rs` and
//! `tests/browser.rs` then check the library router through the example.
//!
//! Every route runs behind the [`AuthLayer`](keyward::http::AuthLayer) of
//! [`super`](super) (sessions as `Authorization: Bearer`) and a requirement of
//! `tokens:manage`, which only sessions hold. The tenant is always the
//! principal's: another tenant's id is 404, exactly like an unknown one.
//! Every response is `Cache-Control: no-store`; errors are
//! `{"error", "message"}` like the layers' rejections.

// Handlers return early with the error response, as axum handlers do.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keyward::http::{Principal, RequireScopesLayer};
use keyward::{Expiry, IssueError, KeyId, KeyInfo, Keyring, ManageError, NewKey, RateLimit};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// The kind these routes manage.
const KIND: &str = "pl";
/// The scopes a new `pl_` token gets when the request names none.
pub(crate) const DEFAULT_SCOPES: &[&str] = &[];
/// The longest rotation grace: 30 days.
const MAX_GRACE_SECONDS: u64 = 30 * 24 * 60 * 60;

/// The routes, relative to their mount point (`/api/tokens`).
pub(crate) fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Keyring: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/", get(list).post(create))
        .route("/grid", get(grid))
        .route("/{id}", get(show).delete(revoke))
        .route("/{id}/revoke", post(revoke))
        .route("/{id}/rotate", post(rotate))
        .route_layer(
            RequireScopesLayer::all([super::sessions::MANAGE_TOKENS]).expect("a valid scope"),
        )
        .layer(axum::middleware::map_response(no_store))
}

async fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = Json(json!({ "error": code, "message": message }));
    (status, [(CACHE_CONTROL, "no-store")], body).into_response()
}

fn invalid_body(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_body", message)
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such token")
}

fn store_unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the key store is unavailable; try again",
    )
}

/// A key as the API shows it: the stored view (never a hash or a token)
/// and its state now.
fn key_view(info: &KeyInfo) -> Value {
    let mut view = serde_json::to_value(info).unwrap_or_default();
    let state = match info.state(OffsetDateTime::now_utc()) {
        keyward::KeyState::Active => "active",
        keyward::KeyState::Revoked => "revoked",
        _ => "expired",
    };
    view["state"] = state.into();
    view
}

/// The body as JSON of type `T`: 413 past the body limit, 415 for a body
/// that is not `application/json`, 400 `invalid_body` for anything that
/// does not parse (unknown fields included). An empty body parses as `{}`
/// when `empty_ok`.
fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    empty_ok: bool,
) -> Result<T, Response> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is larger than 16 KiB",
        ),
        _ => invalid_body("the body could not be read"),
    })?;
    if body.is_empty() && empty_ok {
        return serde_json::from_slice(b"{}").map_err(|_| invalid_body("expected a JSON object"));
    }
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !body.is_empty() && !is_json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ));
    }
    serde_json::from_slice(&body).map_err(|err| invalid_body(&err.to_string()))
}

/// The caller's key with this id: 404 for a malformed id, an unknown one,
/// or one of another tenant (indistinguishable), and for another kind.
async fn tenant_key(keyring: &Keyring, principal: &Principal, id: &str) -> Result<KeyId, Response> {
    let id = KeyId::parse(id).ok_or_else(not_found)?;
    match keyring.get(&id).await {
        Ok(info) if info.tenant() == principal.tenant() && info.kind() == KIND => Ok(id),
        Ok(_) | Err(ManageError::NotFound) => Err(not_found()),
        Err(_) => Err(store_unavailable()),
    }
}

fn issue_error(err: IssueError) -> Response {
    let message = err.to_string();
    match err {
        IssueError::Scope(_) => error(StatusCode::BAD_REQUEST, "invalid_scope", &message),
        IssueError::InvalidName | IssueError::InvalidMetadata => {
            error(StatusCode::BAD_REQUEST, "invalid_label", &message)
        }
        IssueError::UnknownKind(_) => error(StatusCode::BAD_REQUEST, "unknown_kind", &message),
        IssueError::NotFound => not_found(),
        IssueError::Inactive => error(StatusCode::CONFLICT, "key_inactive", &message),
        IssueError::Store(_) => store_unavailable(),
        _ => invalid_body(&message),
    }
}

fn check_kind(kind: Option<&str>) -> Result<(), Response> {
    match kind {
        None | Some(KIND) => Ok(()),
        Some(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "unknown_kind",
            "these routes manage kind \"pl\" only",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    kind: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /`: the tenant's tokens, newest first, paged. The cursor is the id
/// of the last key of the previous page.
async fn list(
    principal: Principal,
    State(keyring): State<Keyring>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return invalid_body("query: kind, state, limit, cursor");
    };
    if let Err(res) = check_kind(query.kind.as_deref()) {
        return res;
    }
    let state = query.state.as_deref().unwrap_or("all");
    if !matches!(state, "active" | "revoked" | "expired" | "all") {
        return invalid_body("state must be one of active, revoked, expired, all");
    }
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return invalid_body("limit must be 1 to 100");
    }
    let mut keys = match keyring.list(principal.tenant()).await {
        Ok(keys) => keys,
        Err(_) => return store_unavailable(),
    };
    keys.reverse();
    let start = match &query.cursor {
        None => 0,
        Some(cursor) => match keys.iter().position(|k| k.id().as_str() == cursor) {
            Some(i) => i + 1,
            None => return invalid_body("unknown cursor"),
        },
    };
    let mut page: Vec<Value> = keys[start..]
        .iter()
        .filter(|k| k.kind() == KIND)
        .map(key_view)
        .filter(|v| state == "all" || v["state"] == state)
        .take(limit + 1)
        .collect();
    let next_cursor = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|v| v["id"].clone())
    } else {
        None
    };
    Json(json!({ "keys": page, "next_cursor": next_cursor })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    kind: Option<String>,
    scopes: Option<Vec<String>>,
    expires_in: Option<String>,
    expires_at: Option<String>,
    rate_limit: Option<u32>,
    metadata: Option<BTreeMap<String, String>>,
}

/// `POST /`: issues a token for the caller's tenant; 201 with the only copy
/// of the token.
async fn create(
    principal: Principal,
    State(keyring): State<Keyring>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: CreateBody = match json_body(&headers, body, false) {
        Ok(req) => req,
        Err(res) => return res,
    };
    if let Err(res) = check_kind(req.kind.as_deref()) {
        return res;
    }
    let expiry = match (req.expires_in.as_deref(), req.expires_at.as_deref()) {
        (Some(_), Some(_)) => return invalid_body("send expires_in or expires_at, not both"),
        (Some(preset), None) => match preset.parse::<Expiry>() {
            Ok(expiry) => expiry,
            Err(_) => return invalid_body("expires_in must be one of 30d, 90d, 1y, never"),
        },
        (None, Some(at)) => {
            match OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339) {
                Ok(at) => Expiry::At(at),
                Err(_) => return invalid_body("expires_at must be an RFC 3339 instant"),
            }
        }
        (None, None) => Expiry::Never,
    };
    let mut new = NewKey::new(KIND, principal.tenant().as_str(), &req.name).expires(expiry);
    new = new.scopes(
        req.scopes
            .unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()),
    );
    if let Some(n) = req.rate_limit {
        match RateLimit::per_minute(n) {
            Some(limit) => new = new.rate_limit(limit),
            None => return invalid_body("rate_limit must be at least 1 a minute"),
        }
    }
    for (k, v) in req.metadata.iter().flatten() {
        new = new.metadata(k, v);
    }
    match keyring.issue(new).await {
        Ok(issued) => {
            let body =
                json!({ "key": key_view(&issued.info), "token": issued.token.expose_secret() });
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(err) => issue_error(err),
    }
}

/// `GET /grid`: the kind's permission grid.
async fn grid(
    State(keyring): State<Keyring>,
    query: Result<Query<GridQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return invalid_body("query: kind");
    };
    if let Err(res) = check_kind(query.kind.as_deref()) {
        return res;
    }
    let Some(kind) = keyring.kind(KIND) else {
        return error(StatusCode::BAD_REQUEST, "unknown_kind", "no such kind");
    };
    let scopes: Vec<Value> = kind
        .catalog()
        .entries()
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "description": e.description,
                "status": e.status,
                "resource": e.resource,
                "action": e.action,
            })
        })
        .collect();
    Json(json!({ "kind": KIND, "default_scopes": DEFAULT_SCOPES, "scopes": scopes }))
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GridQuery {
    kind: Option<String>,
}

/// `GET /{id}`.
async fn show(
    principal: Principal,
    State(keyring): State<Keyring>,
    Path(id): Path<String>,
) -> Response {
    let id = match tenant_key(&keyring, &principal, &id).await {
        Ok(id) => id,
        Err(res) => return res,
    };
    match keyring.get(&id).await {
        Ok(info) => Json(key_view(&info)).into_response(),
        Err(ManageError::NotFound) => not_found(),
        Err(_) => store_unavailable(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `POST /{id}/revoke` (empty body or `{}`) and `DELETE /{id}`: revokes
/// now; idempotent.
async fn revoke(
    principal: Principal,
    State(keyring): State<Keyring>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(res) = json_body::<Empty>(&headers, body, true) {
        return res;
    }
    let id = match tenant_key(&keyring, &principal, &id).await {
        Ok(id) => id,
        Err(res) => return res,
    };
    match keyring.revoke(&id).await {
        Ok(info) => Json(key_view(&info)).into_response(),
        Err(ManageError::NotFound) => not_found(),
        Err(_) => store_unavailable(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    grace_seconds: Option<u64>,
}

/// `POST /{id}/rotate`: a successor (201, its token shown once); the old
/// token works for `grace_seconds` more (0 by default, at most 30 days).
async fn rotate(
    principal: Principal,
    State(keyring): State<Keyring>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: RotateBody = match json_body(&headers, body, true) {
        Ok(req) => req,
        Err(res) => return res,
    };
    let grace = req.grace_seconds.unwrap_or(0);
    if grace > MAX_GRACE_SECONDS {
        return invalid_body("grace_seconds must be at most 30 days");
    }
    let id = match tenant_key(&keyring, &principal, &id).await {
        Ok(id) => id,
        Err(res) => return res,
    };
    match keyring.rotate(&id, Duration::from_secs(grace)).await {
        Ok(issued) => {
            let body =
                json!({ "key": key_view(&issued.info), "token": issued.token.expose_secret() });
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(err) => issue_error(err),
    }
}
