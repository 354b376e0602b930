//! Tower middleware: authenticate requests with a [`Keyring`](crate::Keyring)
//! (and optionally the host's own authenticator), require scopes per route,
//! and refuse with RFC 6750 challenges and small JSON bodies.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use http::{Request, Response, StatusCode};
//! use keyward::http::{AuthLayer, Principal, RequireScopesLayer};
//! use keyward::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog, ScopeStatus};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//!
//! let catalog = ScopeCatalog::builder()
//!     .scope("read", "Read players", ScopeStatus::Enforced)
//!     .scope("write", "Change players", ScopeStatus::Enforced)
//!     .build()?;
//! let keyring = Keyring::builder()
//!     .store(MemoryStore::new())
//!     .kind(KeyKind::new("pk", catalog)?)
//!     .build()?;
//! let issued = keyring.issue(NewKey::new("pk", "property_1", "Backend").scopes(["read"])).await?;
//!
//! let handler = service_fn(|req: Request<String>| async move {
//!     let principal = req.extensions().get::<Principal>().expect("authenticated");
//!     Ok::<_, std::convert::Infallible>(Response::new(format!("hello {}", principal.tenant())))
//! });
//! let mut read = ServiceBuilder::new()
//!     .layer(AuthLayer::new(keyring.clone()))
//!     .layer(RequireScopesLayer::all(["read"])?)
//!     .service(handler.clone());
//!
//! let req = Request::get("/players")
//!     .header("x-api-key", issued.token.expose_secret())
//!     .body(String::new())?;
//! let res = read.ready().await?.call(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.body(), "hello property_1");
//!
//! // The key lacks `write`: 403 with an RFC 6750 challenge and a JSON body.
//! let write = ServiceBuilder::new()
//!     .layer(AuthLayer::new(keyring))
//!     .layer(RequireScopesLayer::all(["write"])?)
//!     .service(handler);
//! let req = Request::post("/players")
//!     .header("authorization", format!("Bearer {}", issued.token.expose_secret()))
//!     .body(String::new())?;
//! let res = write.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert_eq!(
//!     res.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="insufficient_scope", scope="write""#,
//! );
//! assert!(res.body().contains(r#""error":"insufficient_scope""#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Layers
//!
//! * [`AuthLayer`] reads `X-Api-Key` and/or `Authorization: Bearer`
//!   ([`Source`]s; per kind with [`AuthLayer::accept`]), verifies the token with
//!   [`Keyring::verify`](crate::Keyring::verify) (or an
//!   [`ExternalAuthenticator`] for bearer values without a keyward prefix),
//!   checks the tenant header (`X-Property-Id`), enforces the key's rate
//!   limit ([`AuthLayer::rate_limiter`]), runs its [`AuthHook`]s and puts
//!   the [`Principal`] into the request extensions. A client with too many
//!   failed authentications is refused before its credential costs anything
//!   ([`AuthLayer::failure_budget`]). Verification is
//!   bounded by [`AuthLayer::verify_timeout`] (5 s by default; past it, 503
//!   `auth_unavailable`), on tokio's timer.
//! * [`RequireScopesLayer`] goes behind it, per route, with an all-of or
//!   any-of [`Requirement`](crate::Requirement).
//! * [`ThrottleLayer`] guards endpoints without a key (login, password
//!   reset) with quotas per client IP and per account ([`throttle`]).
//!
//! # Rate limits
//!
//! A request over its quota gets 429 `rate_limited` with `Retry-After` (whole
//! seconds, rounded up) and `"retry_after"` in the body; every response a
//! limiter saw, allowed or not, carries the IETF `RateLimit-Policy` and
//! `RateLimit` headers. A limiter that fails is 503 `auth_unavailable`.
//!
//! All three work with any `http::Request<B>` service whose response body
//! converts from `String` (`ResBody: From<String>`): axum's `Body`,
//! `http_body_util::Full<Bytes>`, `String`. For a body without that
//! conversion (tonic's), map the inner service's body first (tower-http's
//! `MapResponseBody`). The authentication and throttle layers need the
//! request body to be `Send + 'static`, since the request waits in a boxed
//! future while the store or the limiter answers.
//!
//! # Tenants
//!
//! A key belongs to one tenant: a tenant header naming another is 403
//! `tenant_mismatch`. An external principal may have several: the header
//! picks one (403 `tenant_mismatch` if it is not among them); without the
//! header, a principal of one tenant acts for it, one of several gets 400
//! `tenant_required`, and one of none 403 `tenant_mismatch`.
//!
//! # Rejections
//!
//! See [`Rejection`] for the table of statuses, codes and challenges, and
//! "Bad input" below. [`AuthLayer::renderer`] replaces the rendering for
//! every layer and extractor behind it.
//!
//! # Bad input
//!
//! The policy, each case tested in `tests/http.rs`:
//!
//! * A header that may carry credentials appears at most once; repeated →
//!   400 `invalid_request`.
//! * Values are visible ASCII; any other byte → 400 `invalid_request`.
//! * Empty values → 400 `invalid_request`.
//! * Values longer than the configured maximum (4096 bytes by default) → 400
//!   `invalid_request`, before any parsing or hashing.
//! * `Authorization`: the scheme is case-insensitive (RFC 7235), so `bearer`
//!   and `BEARER` are accepted. Exactly one space separates it from the token,
//!   which must match RFC 6750's `b64token`; `Bearer` without a token, two
//!   spaces, or trailing spaces → 400 `invalid_request`. (HTTP/1 servers strip
//!   the whitespace around a whole header value, as RFC 9110 requires, before
//!   this layer sees it.)
//! * The scheme is the value's leading RFC 9110 `token`, so it ends at the
//!   first tab, space or separator. A value that does not start with one
//!   (` Bearer token`) → 400 `invalid_request`; `Bearer<TAB>token`,
//!   `Bearer,token` and any other whitespace or separator after `Bearer` make
//!   a malformed Bearer credential → 400 `invalid_request`, never another
//!   scheme. Otherwise `X-Api-Key: A` beside `Authorization: Bearer<TAB>B`
//!   would authenticate as A while another component read B.
//! * `Authorization` with another scheme (`Basic …`) is not a credential of
//!   ours: as if absent (401 `missing_credentials` unless anonymous requests
//!   are allowed).
//! * When no source reads `Authorization` (`.credentials([Source::api_key()])`), it is not read, but
//!   the two rules above still hold whatever the configured source: a
//!   malformed Bearer credential, or a value that does not start with a
//!   scheme, → 400 `invalid_request` (so `X-Api-Key: A` beside
//!   `Authorization: Bearer<TAB>B` is never A). A well-formed `Authorization`
//!   of any scheme, `Bearer B` included, is ignored: another component may
//!   use it. Without an `Authorization` header this costs one header lookup.
//! * `X-Api-Key` carries the token alone, in the same `b64token` alphabet.
//! * Both headers with the same token → accepted; with different tokens → 400
//!   `invalid_request`.

#[macro_use]
pub(crate) mod macros;

pub mod auth;
#[cfg(any(feature = "webhooks", feature = "secret-scanning"))]
pub(crate) mod body;
mod credentials;
pub(crate) mod errors;
mod external;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
mod future;
pub(crate) mod principal;
pub mod rejection;
pub mod require;
pub mod throttle;

pub use auth::{Auth, AuthHook, AuthLayer};
pub use credentials::{
    CredentialSource, Presented, Source, API_KEY_HEADER, DEFAULT_MAX_CREDENTIAL_LEN,
    SOON_SCOPES_HEADER, TENANT_HEADER,
};
pub use external::{ExternalAuthError, ExternalAuthenticator, ExternalPrincipal};
pub use principal::{Identity, Principal, WouldDeny};
pub use rejection::{JsonRejections, Rejection, RenderRejection};
pub use require::{RequireScopes, RequireScopesLayer};
pub use throttle::{Throttle, ThrottleLayer};
