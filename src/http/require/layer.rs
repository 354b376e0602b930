//! [`RequireScopesLayer`]: a route's requirement.

use std::sync::Arc;

use tower::Layer;

use super::RequireScopes;
use crate::error::ScopeError;
use crate::scope::Requirement;

/// Applies [`RequireScopes`] to a service.
///
/// * No [`Principal`](crate::http::Principal) in the request: 401
///   `missing_credentials` behind an [`AuthLayer`] that let an anonymous
///   request through; 500 `auth_misconfigured` when no `AuthLayer` ran
///   before this layer (an error naming the fix is logged).
/// * An enforced requirement the principal does not meet → 403
///   `insufficient_scope`, with the requirement in the challenge's `scope`.
/// * A requirement that names a "soon" scope and would fail once enforced →
///   passes; a [`WouldDeny`](crate::http::WouldDeny) goes into the request
///   extensions (for the handler) and the response extensions (for
///   router-wide middleware, and for
///   [`AuthLayer::soon_scopes_header`](crate::http::AuthLayer::soon_scopes_header)),
///   and an event is logged at target `keyward::audit` (principal id,
///   tenant, required and missing scopes; never a token).
///
/// [`AuthLayer`]: crate::http::AuthLayer
#[derive(Debug, Clone)]
#[must_use]
pub struct RequireScopesLayer {
    requirement: Arc<Requirement>,
}

impl RequireScopesLayer {
    /// Requires `requirement`.
    pub fn new(requirement: Requirement) -> Self {
        RequireScopesLayer {
            requirement: Arc::new(requirement),
        }
    }

    /// Requires every one of these scopes.
    ///
    /// # Errors
    ///
    /// [`ScopeError`] when a scope is malformed or a wildcard, or the list is
    /// empty.
    pub fn all<I, S>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Requirement::all(scopes).map(Self::new)
    }

    /// Requires any one of these scopes.
    ///
    /// # Errors
    ///
    /// [`ScopeError`] when a scope is malformed or a wildcard, or the list is
    /// empty.
    pub fn any<I, S>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Requirement::any(scopes).map(Self::new)
    }

    /// The requirement.
    #[must_use]
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }
}

impl<S> Layer<S> for RequireScopesLayer {
    type Service = RequireScopes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopes::new(inner, self.requirement.clone())
    }
}
