//! Key management as a library: a router a host mounts behind its
//! [`AuthLayer`](crate::http::AuthLayer) to create, list, show, revoke and
//! rotate its tenants' keys, and to serve each kind's permission grid
//! (feature `axum`).
//!
//! The tenant is always the caller's ([`Principal::tenant`](crate::http::Principal::tenant)):
//! another tenant's key is 404, exactly like an unknown id. Who may manage
//! keys, and what they may grant, is a [`ManagePolicy`] the host supplies;
//! the default, [`ScopePolicy`], lets a key holding `keys:manage` manage keys
//! of its own kind and never mint one with more than its own scopes.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use axum::{body::Body, Router};
//! use http::{Request, StatusCode};
//! use keyward::http::AuthLayer;
//! use keyward::manage::ManageRouter;
//! use keyward::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog, ScopeStatus};
//! use tower::ServiceExt;
//!
//! let catalog = ScopeCatalog::builder()
//!     .scope("read", "Read players", ScopeStatus::Enforced)
//!     .scope("keys:manage", "Manage API keys", ScopeStatus::Enforced)
//!     .build()?;
//! let keyring = Keyring::builder()
//!     .store(MemoryStore::new())
//!     .kind(KeyKind::new("pk", catalog)?.default_scopes(["read"])?)
//!     .build()?;
//! let admin = keyring
//!     .issue(NewKey::new("pk", "property_1", "Admin").scopes(["read", "keys:manage"]))
//!     .await?;
//!
//! let app: Router = Router::new()
//!     .nest("/api/keys", ManageRouter::new(keyring.clone()).kind("pk")?.into_router())
//!     .layer(AuthLayer::new(keyring));
//!
//! let create = Request::post("/api/keys")
//!     .header("x-api-key", admin.token.expose_secret())
//!     .header("content-type", "application/json")
//!     .body(Body::from(r#"{"name": "Backend", "expires_in": "90d"}"#))?;
//! let response = app.oneshot(create).await?;
//! assert_eq!(response.status(), StatusCode::CREATED);
//! assert_eq!(response.headers()["cache-control"], "no-store");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Routes
//!
//! Relative to the mount point:
//!
//! | method and path | input | success |
//! |---|---|---|
//! | `GET /` | query `kind`, `state` (`active`, `revoked`, `expired`, `all`: the default), `limit` (1–100, default 50), `cursor`, `owner` | 200 `{"keys": [KeyView…], "next_cursor": string or null}`, newest first |
//! | `POST /` | `{"name", "kind"?, "scopes"?, "expires_in"? (30d, 90d, 1y, never), "expires_at"? (RFC 3339), "rate_limit"? (a minute), "metadata"? {str: str}, "owner"?, "allowed_ips"? [CIDR…], "credits"? Credits, "budget"?}` | 201 `{"key": KeyView, "token": "…"}` |
//! | `GET /{id}` | – | 200 KeyView |
//! | `PATCH /{id}` | `{"allowed_ips"? [CIDR…] or null, "credits"? Credits or null, "add_credits"? n, "budget"? string or null, "rate_limit"? n}`: absent fields are kept, `null` removes | 200 KeyView |
//! | `POST /{id}/revoke`, `DELETE /{id}` | no body, or `{}` | 200 KeyView (idempotent) |
//! | `POST /{id}/rotate` | `{"grace_seconds"?}` (default 0, at most 30 days), or no body | 201 `{"key": KeyView, "token": "…"}` |
//! | `GET /grid` | query `kind` | 200 `{"kind", "default_scopes", "scopes": [{"name", "description", "status", "resource", "action"}…]}` |
//!
//! A KeyView is the [`KeyInfo`](crate::KeyInfo) JSON and `"state"`: never a
//! hash, and the token only in the answer of the call that made it.
//! Credits are `{"remaining", "refill"?: {"amount", "period": "daily" |
//! "monthly", "day"? (monthly: 1–31)}}` (see [`crate::usage`]). `credits`,
//! `add_credits` (atomic with concurrent spends), `budget`, and
//! `rate_limit` on a key of a budget (it is the budget's limit) are billing
//! decisions: refused (403 `billing_not_managed`) unless the router allows
//! them ([`ManageRouter::billing_controls`]). A tenant that manages its own
//! keys can still create keys outside any budget: budgets cap keys the
//! provider issues. A `PATCH` sends a `controls_changed` event.
//!
//! ```json
//! {"id": "key_6uYkq0Qm2d7c9xJ1aT4bVw", "tenant": "org_1", "kind": "pl",
//!  "name": "CI uploader", "display_prefix": "pl_8fK2x", "scopes": ["versions:write"],
//!  "created_at": "2026-11-26T12:00:00Z", "expires_at": "2027-02-24T12:00:00Z",
//!  "last_used_at": null, "revoked_at": null, "rate_limit": {"per_minute": 100},
//!  "metadata": {}, "rotated_from": null, "owner": null, "allowed_ips": null,
//!  "credits": null, "budget": null, "recent_ips": [], "last_user_agent": null,
//!  "state": "active"}
//! ```
//!
//! `last_used_at` is fresh in this process (uses not yet written count). Every response carries
//! `Cache-Control: no-store`. `kind` defaults to the router's default kind
//! and `scopes` to the kind's default scopes; `expires_in` and `expires_at`
//! exclude each other; without either the key gets its kind's default expiry ([`ExpiryPolicy`](crate::ExpiryPolicy): never, unless set), and an expiry the policy refuses is 400 `expiry_not_allowed`. A
//! rotation's successor keeps the old key's name, scopes, limits, metadata,
//! owner and expiry. A rotation with a grace (`grace_seconds` ≥ 1) also
//! arms reuse detection: the old token presented after the grace is
//! reported ([`ReusePolicy`](crate::ReusePolicy)); a zero grace is a plain
//! revocation. `owner` makes a personal key of a user inside the
//! caller's tenant ([`NewKey::owner`](crate::NewKey::owner)); `?owner=`
//! lists one user's keys (offboarding revokes them all with
//! [`Keyring::revoke_owner`](crate::Keyring::revoke_owner)).
//!
//! # Errors
//!
//! The JSON shape of every [`Rejection`](crate::http::Rejection),
//! `{"error": code, "message": text}` with `Content-Type: application/json`
//! and `Cache-Control: no-store`:
//!
//! | status | `error` | when |
//! |---|---|---|
//! | 400 | `invalid_body` | malformed JSON, an unknown or repeated field, a wrong type, a bad or past expiry, both expiry fields, a rate limit out of bounds, a grace over 30 days, a bad `limit`, `state` or `cursor` (altered, or another tenant's), an unknown query parameter, a bad CIDR range (host bits set, IPv4-mapped, none or over 100), credits over 2^53 − 1 or a bad refill, `credits` with `add_credits`, a `PATCH` naming nothing |
//! | 400 | `invalid_scope` | a scope the kind's catalog does not declare |
//! | 400 | `invalid_label` | a bad name, metadata, owner or budget (see [`NewKey`](crate::NewKey)) |
//! | 403 | `billing_not_managed` | `credits`, `add_credits`, `budget`, or `rate_limit` on a key of a budget, without [`ManageRouter::billing_controls`] |
//! | 400 | `unknown_kind` | a kind this router does not manage |
//! | 403 | `insufficient_scope` | the policy refuses: not a manager, or scopes beyond the caller's own, or the management scope where the policy does not allow it |
//! | 404 | `not_found` | an unknown or malformed id, another tenant's key, a key of a kind not managed here; an unknown route |
//! | 405 | `method_not_allowed` | a route without that method |
//! | 409 | `key_inactive` | rotating a revoked or expired key |
//! | 409 | `key_not_metered` | `add_credits` on a key without credits |
//! | 413 | `payload_too_large` | a body over the limit ([`ManageRouter::body_limit`], 16 KiB) |
//! | 415 | `unsupported_media_type` | a body without `Content-Type: application/json` |
//! | 500 | `auth_misconfigured` | no principal: the router is not behind an `AuthLayer` (logged as an error) |
//! | 503 | `store_unavailable` | the store failed (never a 2xx) |
//!
//! 401, 403 `tenant_mismatch` and 429 come from the `AuthLayer` as for any
//! route. A policy's 403 goes through the layer's
//! [renderer](crate::http::AuthLayer::renderer), with its `WWW-Authenticate`
//! challenge; the keyring's errors render with
//! [`IssueError::to_response`](crate::IssueError::to_response) and
//! [`ManageError::to_response`](crate::ManageError::to_response).
//!
//! # Audit
//!
//! Create, revoke, rotate and `PATCH` send a [lifecycle event](crate::LifecycleEvent)
//! through the keyring's sink (by default a `tracing` event at target
//! `keyward::audit`) with the key id, the tenant, the kind, the owner and
//! the actor ([`Principal::actor`](crate::http::Principal::actor): the
//! caller's key or external subject); never a token or a hash.

mod input;
mod policy;
mod router;

pub use policy::{ManagePolicy, ScopePolicy, Verdict};
pub use router::{
    ManageRouter, DEFAULT_BODY_LIMIT, DEFAULT_MAX_EXPIRY, DEFAULT_MAX_RATE_LIMIT, MAX_GRACE,
};
