//! Error types, one per layer of the crate.
//!
//! Every variant is a case a caller can act on. None of them ever carries a
//! token, a part of a token or a hash: their `Debug` and `Display` output is
//! safe to log.

use std::fmt;
use std::sync::Arc;

/// Why a string is not a well-formed token of a known kind.
///
/// Returned by [`TokenFormat::parse`](crate::TokenFormat::parse) before any
/// store is touched.
///
/// ```
/// use keyward::{TokenError, TokenFormat, TokenKind};
///
/// let format = TokenFormat::new([TokenKind::new("pk").unwrap()]);
/// assert_eq!(format.parse("").unwrap_err(), TokenError::Empty);
/// assert_eq!(format.parse("nope").unwrap_err(), TokenError::MissingPrefix);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The input is empty.
    #[error("the token is empty")]
    Empty,
    /// The input is longer than any token of a known kind can be.
    #[error("the token is too long")]
    TooLong,
    /// The input has no `<prefix>_` part.
    #[error("the token has no prefix")]
    MissingPrefix,
    /// The prefix is well formed but names no configured token kind.
    #[error("the token prefix is not one this service issues")]
    UnknownPrefix,
    /// The body after the prefix has the wrong length.
    #[error("the token body has the wrong length")]
    BadLength,
    /// A character outside the token alphabet (`[0-9A-Za-z]` in the body).
    #[error("the token contains a character outside its alphabet")]
    InvalidCharacter,
    /// The checksum does not match: a typo, a truncated paste or garbage.
    #[error("the token checksum does not match")]
    BadChecksum,
    /// The checksum matches but the keyed tag does not: the token was not
    /// issued under this service's [`TokenKey`](crate::TokenKey) (a forgery,
    /// or a token of another deployment).
    #[error("the token was not issued by this service")]
    BadTag,
}

/// Why a token kind or its prefix could not be configured.
///
/// ```
/// use keyward::{ConfigError, TokenKind};
///
/// assert!(matches!(TokenKind::new("PK"), Err(ConfigError::InvalidPrefix(_))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A prefix must be 1–16 characters of `[a-z0-9_]`, start with a letter and
    /// not end with `_`.
    #[error("invalid token prefix {0:?}: use 1-16 of [a-z0-9_], starting with a letter")]
    InvalidPrefix(String),
    /// Two token kinds share a prefix.
    #[error("token prefix {0:?} is configured twice")]
    DuplicatePrefix(String),
    /// A scope catalog declaration is invalid.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// The keyring was built without any token kind.
    #[error("the keyring has no token kind")]
    NoTokenKind,
    /// Two peppers share a version, or a pepper is too short.
    #[error("invalid pepper: {0}")]
    InvalidPepper(&'static str),
    /// A store's configuration is invalid (a connection string, a schema
    /// name, a pool setting), or a call needs configuration the store lacks.
    #[error("invalid store configuration: {0}")]
    InvalidStore(&'static str),
    /// A token key is too short, or its rotation is misconfigured.
    #[error("invalid token key: {0}")]
    InvalidTokenKey(&'static str),
    /// A webhook verifier or delivery setting is out of range (no key, a
    /// tolerance or timeout outside its bounds); the text says which.
    #[error("invalid webhook configuration: {0}")]
    InvalidWebhookConfig(&'static str),
    /// An expiry policy's default is one it does not allow.
    #[error("invalid expiry policy: {0}")]
    InvalidExpiryPolicy(&'static str),
    /// A layer names a token kind the keyring does not have.
    #[error("the keyring has no token kind {0:?}")]
    UnknownKind(String),
    /// A layer accepts a kind from no credential source.
    #[error("a kind must be accepted from at least one credential source")]
    NoSources,
    /// [`KeyringBuilder::last_used_timer`](crate::KeyringBuilder::last_used_timer)
    /// was given without
    /// [`spawn_last_used_writes`](crate::KeyringBuilder::spawn_last_used_writes):
    /// the timer runs as a task the host spawns.
    #[error("last_used_timer needs spawn_last_used_writes: the timer runs as a spawned task")]
    LastUsedTimerWithoutSpawner,
    /// A [`Sweeper`](crate::Sweeper) setting is out of range; the text says
    /// which.
    #[error("invalid sweeper configuration: {0}")]
    InvalidSweeper(&'static str),
    /// A [`ScanRules`](crate::scan::ScanRules) name is not 1–32 of
    /// `[a-z0-9_-]` starting with a letter.
    #[error("invalid scanner rule name {0:?}: use 1-32 of [a-z0-9_-], starting with a letter")]
    InvalidRuleName(String),
    /// A secret-scanning receiver setting is out of range (a zero body
    /// limit or token bound); the text says which.
    #[error("invalid secret-scanning configuration: {0}")]
    InvalidLeakConfig(&'static str),
}

/// Why a scope string or a catalog declaration is invalid.
///
/// ```
/// use keyward::{Scope, ScopeError};
///
/// assert!(matches!("Games:Read".parse::<Scope>(), Err(ScopeError::Invalid(_))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// Not of the form `name` or `resource:action` (each part 1–64 of
    /// `[a-z0-9_-]`, starting with a letter), or a wildcard where none is allowed.
    #[error("invalid scope {0:?}: use `name` or `resource:action` in [a-z0-9_-]")]
    Invalid(String),
    /// The scope is well formed but the catalog does not declare it.
    #[error("unknown scope {0:?}")]
    Unknown(String),
    /// The catalog declares a scope twice.
    #[error("scope {0:?} is declared twice")]
    Duplicate(String),
    /// A requirement names no scope.
    #[error("a scope requirement must name at least one scope")]
    EmptyRequirement,
}

/// A storage back end failed. Never grants access: the HTTP layer maps it to 503.
///
/// The underlying error is kept as the [`source`](std::error::Error::source)
/// (shared, so the error stays `Clone`), never repeated in the message:
/// print the chain to see it. A host can downcast it, for example to the
/// PostgreSQL store's `PgError` to read the SQLSTATE. The stores of this crate
/// never put a secret into either.
///
/// ```
/// use std::error::Error;
/// use keyward::StoreError;
///
/// let err = StoreError::unavailable("connection refused");
/// assert!(err.is_unavailable());
/// assert_eq!(err.to_string(), "key store unavailable");
/// assert_eq!(err.source().unwrap().to_string(), "connection refused");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached or timed out; retrying later may work.
    Unavailable(Arc<dyn std::error::Error + Send + Sync>),
    /// A record with the same id or hash already exists.
    Conflict,
    /// Any other failure of the back end.
    Other(Arc<dyn std::error::Error + Send + Sync>),
    /// The store does not implement this operation of the contract (a
    /// provided [`KeyStore`](crate::KeyStore) method it did not override);
    /// names the method.
    Unsupported(&'static str),
}

impl StoreError {
    /// A [`StoreError::Unavailable`] from any error or message.
    pub fn unavailable(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Unavailable(Arc::from(err.into()))
    }

    /// A [`StoreError::Other`] from any error or message.
    pub fn other(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Other(Arc::from(err.into()))
    }

    /// Whether this is [`StoreError::Unavailable`].
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreError::Unavailable(_) => "key store unavailable",
            StoreError::Conflict => "key store conflict: a key with this id or hash exists",
            StoreError::Other(_) => "key store error",
            StoreError::Unsupported(_) => "key store does not support this operation",
        })
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The cause itself, not the `Arc` (whose `Error` impl would hide
            // the cause's type from a downcast).
            StoreError::Unavailable(cause) | StoreError::Other(cause) => Some(&**cause),
            StoreError::Conflict | StoreError::Unsupported(_) => None,
        }
    }
}

/// Why a key could not be issued or rotated.
///
/// ```
/// use keyward::IssueError;
///
/// let err = IssueError::InvalidName;
/// assert!(err.to_string().starts_with("a key name must be 1-200 characters"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// No token kind with this prefix is configured.
    #[error("no token kind with prefix {0:?} is configured")]
    UnknownKind(String),
    /// A scope is malformed or not declared in the kind's catalog.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// The key name is empty, too long, or has control, format (bidi,
    /// zero-width) or line-separator characters.
    #[error("a key name must be 1-200 characters, not all spaces, without control, format (bidi, zero-width) or line-separator characters")]
    InvalidName,
    /// The tenant id is empty, too long, or has control, format or
    /// line-separator characters.
    #[error("a tenant id must be 1-200 characters, not all spaces, without control, format (bidi, zero-width) or line-separator characters")]
    InvalidTenant,
    /// Too many metadata labels, or one too long or with control, format or
    /// line-separator characters (in its key or its value).
    #[error("metadata: at most 32 labels, keys 1-64 bytes, values up to 1024 bytes, without control, format (bidi, zero-width) or line-separator characters")]
    InvalidMetadata,
    /// The owner id is empty, too long, or has control, format or
    /// line-separator characters.
    #[error("an owner id must be 1-200 characters, not all spaces, without control, format (bidi, zero-width) or line-separator characters")]
    InvalidOwner,
    /// The budget id is empty, too long, or has control, format or
    /// line-separator characters.
    #[error("a budget id must be 1-200 characters, not all spaces, without control, format (bidi, zero-width) or line-separator characters")]
    InvalidBudget,
    /// Credits set through their public fields out of range.
    #[error(transparent)]
    Controls(#[from] crate::usage::UsageError),
    /// The expiry lies in the past.
    #[error("the expiry lies in the past")]
    ExpiryInPast,
    /// The expiry asked for (or the one a rotation keeps) is outside the
    /// kind's [`ExpiryPolicy`](crate::ExpiryPolicy); the text says why.
    #[error("expiry not allowed: {0}")]
    ExpiryNotAllowed(&'static str),
    /// The key to rotate does not exist.
    #[error("no such key")]
    NotFound,
    /// The key to rotate is revoked or expired.
    #[error("the key is revoked or expired")]
    Inactive,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a presented token does not authenticate.
///
/// The variants the HTTP layer tells apart (`invalid_token`, `token_expired`,
/// `token_revoked`, `auth_unavailable`) map one to one onto these.
///
/// ```
/// use keyward::{TokenError, VerifyError};
///
/// let err = VerifyError::Malformed(TokenError::BadChecksum);
/// assert_eq!(err.to_string(), "malformed token: the token checksum does not match");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is not well formed; no store was asked. (The reason is
    /// part of the message, not a separate source.)
    #[error("malformed token: {0}")]
    Malformed(TokenError),
    /// Well formed, but no key has this hash.
    #[error("unknown token")]
    Unknown,
    /// The key has expired.
    #[error("the token has expired")]
    Expired,
    /// The key has been revoked.
    #[error("the token has been revoked")]
    Revoked,
    /// The store failed; access is refused (fail closed).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TokenError> for VerifyError {
    fn from(err: TokenError) -> Self {
        VerifyError::Malformed(err)
    }
}

/// Why a management operation ([`Keyring::get`](crate::Keyring::get),
/// [`list`](crate::Keyring::list), [`list_page`](crate::Keyring::list_page),
/// [`revoke`](crate::Keyring::revoke) and their tenant-scoped forms) failed.
///
/// ```
/// use keyward::ManageError;
///
/// assert_eq!(ManageError::NotFound.to_string(), "no such key");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// No key with this id exists (in this tenant, for the tenant-scoped
    /// calls: another tenant's key is not found either).
    #[error("no such key")]
    NotFound,
    /// A page cursor that is malformed, was altered, or was issued for
    /// another tenant.
    #[error("invalid page cursor")]
    InvalidCursor,
    /// A page size outside 1 to [`MAX_PAGE_LIMIT`](crate::MAX_PAGE_LIMIT).
    #[error("the page size must be 1-100")]
    InvalidLimit,
    /// A kind filter names no configured token kind.
    #[error("no token kind with prefix {0:?} is configured")]
    UnknownKind(String),
    /// A usage-control change that can not apply (credits added to a key
    /// without credits).
    #[error(transparent)]
    Controls(#[from] crate::usage::UsageError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stands in for secret material in `Debug` output: prints `[REDACTED]`.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    /// Each message in an error's chain, outermost first.
    fn chain(err: &dyn Error) -> Vec<String> {
        let mut out = vec![err.to_string()];
        let mut next = err.source();
        while let Some(cause) = next {
            out.push(cause.to_string());
            next = cause.source();
        }
        out
    }

    #[test]
    fn causes_are_kept_and_printed_once() {
        let store = StoreError::unavailable("connection refused");
        let errors: Vec<Box<dyn Error>> = vec![
            Box::new(VerifyError::Malformed(TokenError::BadChecksum)),
            Box::new(VerifyError::Store(store.clone())),
            Box::new(IssueError::Store(StoreError::other("disk full"))),
            Box::new(ManageError::Store(store.clone())),
            Box::new(IssueError::Scope(ScopeError::Unknown("x:y".into()))),
            Box::new(ConfigError::Scope(ScopeError::Duplicate("read".into()))),
        ];
        for err in &errors {
            let messages = chain(err.as_ref());
            for (i, outer) in messages.iter().enumerate() {
                for inner in &messages[i + 1..] {
                    assert!(
                        !outer.contains(inner.as_str()),
                        "{outer:?} repeats its cause {inner:?}"
                    );
                }
            }
        }
        // The store's cause is reachable, through the wrappers too.
        assert_eq!(
            chain(&VerifyError::Store(store)),
            ["key store unavailable", "connection refused"]
        );
        assert_eq!(
            chain(&VerifyError::Malformed(TokenError::BadTag)),
            ["malformed token: the token was not issued by this service"]
        );
    }

    #[test]
    fn the_store_source_keeps_its_type() {
        #[derive(Debug)]
        struct Driver;
        impl fmt::Display for Driver {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("driver")
            }
        }
        impl Error for Driver {}
        let err = StoreError::other(Driver);
        assert!(err.source().unwrap().downcast_ref::<Driver>().is_some());
        assert!(StoreError::Conflict.source().is_none());
    }
}
