//! Plugging in another authenticator (the host's JWT check, a session
//! lookup, …) for bearer values that are not keyward tokens.
//!
//! See [`ExternalAuthenticator`](crate::http::ExternalAuthenticator).

use std::fmt;
use std::sync::Arc;

use crate::key::TenantId;
use crate::scope::{ScopeCatalog, ScopeSet};

/// Authenticates bearer values that are not keyward tokens: the host's JWT
/// check, a session lookup, …
///
/// A bearer value that does not start with `<prefix>_` of a configured token
/// kind goes to the [`ExternalAuthenticator`] given to
/// [`AuthLayer::external`](crate::http::AuthLayer::external). A value sent
/// only in the `X-Api-Key` header always goes to the keyring; one sent in
/// both headers (they must then be equal) counts as a bearer value.
///
/// ```
/// use std::sync::Arc;
/// use keyward::http::{ExternalAuthError, ExternalAuthenticator, ExternalPrincipal};
/// use keyward::{ScopeCatalog, ScopeStatus, TenantId};
///
/// struct Sessions {
///     catalog: Arc<ScopeCatalog>,
/// }
///
/// #[keyward::async_trait]
/// impl ExternalAuthenticator for Sessions {
///     async fn authenticate(&self, bearer: &str) -> Result<ExternalPrincipal, ExternalAuthError> {
///         if bearer != "session-of-alice" {
///             return Err(ExternalAuthError::Invalid);
///         }
///         let tenants = ["prop_1", "prop_2"].into_iter().filter_map(TenantId::parse);
///         let scopes = self.catalog.grant(["read"]).map_err(ExternalAuthError::unavailable)?;
///         Ok(ExternalPrincipal::new("user:alice", tenants, scopes, self.catalog.clone()))
///     }
/// }
/// # let _ = Sessions { catalog: Arc::new(ScopeCatalog::builder()
/// #     .scope("read", "", ScopeStatus::Enforced).build().unwrap()) };
/// ```
///
/// Errors never grant access: [`ExternalAuthError::Invalid`] is a 401
/// `invalid_token`, [`ExternalAuthError::Expired`] a 401 `token_expired`,
/// [`ExternalAuthError::Unavailable`] a 503 `auth_unavailable`. An
/// authenticator that panics does not let the request through either: the
/// panic unwinds out of the service's future, and the server drops the
/// connection (hyper and axum do) without calling the inner service.
///
/// Object safe (the layer holds it as `Arc<dyn ExternalAuthenticator>`):
/// implement it with `#[keyward::async_trait]` (re-exported, no dependency
/// to add), as above. The method reads
/// `async fn authenticate(&self, bearer: &str) -> Result<ExternalPrincipal,
/// ExternalAuthError>`; the signature rendered below is the macro's
/// expansion of it.
#[async_trait::async_trait]
pub trait ExternalAuthenticator: Send + Sync + 'static {
    /// The principal this bearer value stands for.
    async fn authenticate(&self, bearer: &str) -> Result<ExternalPrincipal, ExternalAuthError>;
}

/// Why an [`ExternalAuthenticator`] refused a bearer value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExternalAuthError {
    /// Not a valid credential: 401 `invalid_token`.
    #[error("invalid credential")]
    Invalid,
    /// A valid credential that has expired: 401 `token_expired`.
    #[error("expired credential")]
    Expired,
    /// The authenticator could not decide (its key set or database is
    /// unreachable): 503 `auth_unavailable`.
    #[error("authenticator unavailable: {0}")]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
}

impl ExternalAuthError {
    /// An [`ExternalAuthError::Unavailable`] from any error or message.
    pub fn unavailable(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ExternalAuthError::Unavailable(err.into())
    }
}

/// Who an [`ExternalAuthenticator`] says the caller is: a subject, the
/// tenants it may act for, and its scopes with the catalog to evaluate them.
#[derive(Clone)]
pub struct ExternalPrincipal {
    subject: Arc<str>,
    tenants: Arc<[TenantId]>,
    scopes: ScopeSet,
    catalog: Arc<ScopeCatalog>,
}

impl ExternalPrincipal {
    /// A principal. `subject` names it in logs (a user id, never a token).
    /// With no tenant at all, every request is refused with 403
    /// `tenant_mismatch`.
    pub fn new(
        subject: &str,
        tenants: impl IntoIterator<Item = TenantId>,
        scopes: ScopeSet,
        catalog: Arc<ScopeCatalog>,
    ) -> Self {
        let mut tenants: Vec<TenantId> = tenants.into_iter().collect();
        tenants.sort();
        tenants.dedup();
        ExternalPrincipal {
            subject: Arc::from(subject),
            tenants: tenants.into(),
            scopes,
            catalog,
        }
    }

    /// The subject.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The tenants, sorted.
    #[must_use]
    pub fn tenants(&self) -> &[TenantId] {
        &self.tenants
    }

    /// The granted scopes.
    #[must_use]
    pub fn scopes(&self) -> &ScopeSet {
        &self.scopes
    }

    /// The catalog the scopes are evaluated against.
    #[must_use]
    pub fn catalog(&self) -> &ScopeCatalog {
        &self.catalog
    }
}

impl fmt::Debug for ExternalPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalPrincipal")
            .field("subject", &self.subject)
            .field("tenants", &self.tenants)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}
