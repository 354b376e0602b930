//! # keyward
//!
//! API keys and access tokens with fine-grained scopes for Rust web services.
//!
//! * Prefixed tokens (`pk_…`, `pl_…`) with a checksum, rejected offline when
//!   mistyped ([`TokenFormat`]).
//! * Only hashes at rest: SHA-256 or HMAC-SHA256 with a rotatable pepper
//!   ([`TokenHasher`]).
//! * Scope catalogs with enforced and "soon" scopes, implications and
//!   wildcards ([`ScopeCatalog`]).
//! * A [`Keyring`] that issues, verifies, lists, revokes and rotates keys over
//!   any [`KeyStore`], with coalesced last-used writes.
//! * Tower middleware in `keyward::http` (feature `http`, default): an
//!   authentication layer, per-route scope requirements and RFC 6750
//!   rejections; with feature `axum`, extractors for the principal and a
//!   key-management router (`keyward::manage`).
//! * Stores: [`MemoryStore`], a read-through [`store::CachedStore`] for any
//!   store, and PostgreSQL (`store::postgres`, feature `postgres`).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use keyward::{Decision, Expiry, KeyKind, Keyring, MemoryStore, NewKey, Requirement,
//!               ScopeCatalog, ScopeStatus};
//!
//! let catalog = ScopeCatalog::builder()
//!     .scope("games:read", "List games", ScopeStatus::Soon)
//!     .scope("versions:write", "Upload versions", ScopeStatus::Enforced)
//!     .build()?;
//! let keyring = Keyring::builder()
//!     .store(MemoryStore::new())
//!     .kind(KeyKind::new("pl", catalog)?)
//!     .build()?;
//!
//! let issued = keyring
//!     .issue(NewKey::new("pl", "org_1", "CI").scopes(["versions:write"]).expires(Expiry::Days90))
//!     .await?;
//! println!("your token (shown once): {}", issued.token.expose_secret());
//!
//! let key = keyring.verify(issued.token.expose_secret()).await?;
//! let upload = Requirement::all(["versions:write"])?;
//! assert_eq!(key.check(&upload), Decision::Allowed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod error;
mod hash;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod jwt;
mod key;
mod keyring;
mod last_used;
#[cfg(feature = "secret-scanning")]
#[cfg_attr(docsrs, doc(cfg(feature = "secret-scanning")))]
pub mod leaks;
mod lifecycle;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod manage;
#[cfg(any(feature = "jwt", feature = "webhooks", feature = "secret-scanning"))]
mod net;
mod page;
pub mod ratelimit;
pub mod scan;
mod scope;
pub mod store;
mod sweeper;
// Also in unit tests, which use its helpers but can not enable features.
#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
mod token;
pub mod usage;
#[cfg(feature = "webhooks")]
#[cfg_attr(docsrs, doc(cfg(feature = "webhooks")))]
pub mod webhooks;

#[cfg(any(test, feature = "test-util"))]
pub use clock::ManualClock;
pub use clock::{Clock, SystemClock};
pub use error::{
    ConfigError, IssueError, ManageError, ScopeError, StoreError, TokenError, VerifyError,
};
pub use hash::{HashScheme, Pepper, TokenHash, TokenHasher, TOKEN_HASH_LEN};
pub use key::{
    Expiry, ExpiryPolicy, KeyId, KeyInfo, KeyRecord, KeyState, NewKey, OwnerId, ParseExpiryError,
    ParseStateFilterError, RateLimit, StateFilter, TenantId,
};
pub use keyring::{
    Acting, IssuedKey, KeyKind, Keyring, KeyringBuilder, LeakOutcome, LeakReport, NoStore,
    ReusePolicy, VerifiedKey, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_LEN, MAX_METADATA_VALUE_LEN,
};
pub use lifecycle::{Actor, EventKind, LifecycleEvent, LifecycleSink, SinkError, TracingSink};
pub use page::{KeyPage, ListQuery, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
pub use ratelimit::{LimitError, MemoryRateLimiter, Quota, RateDecision, RateLimiter};
pub use scope::{
    Decision, Requirement, Scope, ScopeCatalog, ScopeCatalogBuilder, ScopeEntry, ScopeSet,
    ScopeStatus,
};
pub use store::{KeyStore, MemoryStore, Revocation};
pub use sweeper::{SweepReport, Sweeper, SweeperBuilder};
pub use token::{
    ParsedToken, Secret, TokenFormat, TokenKey, TokenKind, BODY_LEN, DISPLAY_PREFIX_LEN,
    TAGGED_BODY_LEN,
};

/// The README's examples, compiled as doctests so they stay true.
#[cfg(all(
    doctest,
    feature = "postgres",
    feature = "jwt",
    feature = "webhooks",
    feature = "secret-scanning"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Re-exported so hosts name the same `time` types.
pub use time;

/// The attribute the crate's async traits ([`KeyStore`],
/// [`RateLimiter`], and with feature `http` `http::ExternalAuthenticator`
/// and `http::AuthHook`) are written with: put `#[keyward::async_trait]` on
/// an implementation and write its methods as `async fn`, as the trait
/// documentation shows them. Re-exported so a host needs no dependency of
/// its own (the traits stay object safe: the keyring holds
/// `Arc<dyn KeyStore>`).
pub use async_trait::async_trait;
