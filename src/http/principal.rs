//! The authenticated caller, as the authentication layer puts it into the
//! request extensions, and the "would deny" record of "soon" scopes.

use crate::http::external::ExternalPrincipal;
use crate::key::TenantId;
use crate::keyring::VerifiedKey;
use crate::scope::{Decision, Requirement, Scope, ScopeCatalog, ScopeSet};

/// The authenticated caller of a request, acting for one tenant.
///
/// Read it from the request extensions (`req.extensions().get::<Principal>()`)
/// or, with the `axum` feature, as an extractor.
#[derive(Debug, Clone)]
pub struct Principal {
    identity: Identity,
    tenant: TenantId,
}

/// What authenticated the caller.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Identity {
    /// A keyward key.
    Key(VerifiedKey),
    /// The host's [`ExternalAuthenticator`](crate::http::ExternalAuthenticator).
    External(ExternalPrincipal),
}

impl Principal {
    pub(crate) fn key(key: VerifiedKey) -> Self {
        Principal {
            tenant: key.tenant().clone(),
            identity: Identity::Key(key),
        }
    }

    pub(crate) fn external(principal: ExternalPrincipal, tenant: TenantId) -> Self {
        Principal {
            identity: Identity::External(principal),
            tenant,
        }
    }

    /// What authenticated the caller.
    #[must_use]
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The verified key, for a key-based request.
    #[must_use]
    pub fn verified_key(&self) -> Option<&VerifiedKey> {
        match &self.identity {
            Identity::Key(key) => Some(key),
            Identity::External(_) => None,
        }
    }

    /// The external principal, for a request the external authenticator
    /// accepted.
    #[must_use]
    pub fn external_principal(&self) -> Option<&ExternalPrincipal> {
        match &self.identity {
            Identity::External(p) => Some(p),
            Identity::Key(_) => None,
        }
    }

    /// The tenant this request acts for: the key's tenant, or the one the
    /// tenant header selected among the external principal's.
    #[must_use]
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// A name for logs: the key id, or the external subject. Never secret.
    #[must_use]
    pub fn id(&self) -> &str {
        match &self.identity {
            Identity::Key(key) => key.id().as_str(),
            Identity::External(p) => p.subject(),
        }
    }

    /// Who acts, for [lifecycle events](crate::LifecycleEvent): the key, or
    /// the external subject.
    #[must_use]
    pub fn actor(&self) -> crate::Actor {
        match &self.identity {
            Identity::Key(key) => crate::Actor::Key(key.id().clone()),
            Identity::External(p) => crate::Actor::Subject(p.subject().to_owned()),
        }
    }

    /// The granted scopes.
    #[must_use]
    pub fn scopes(&self) -> &ScopeSet {
        match &self.identity {
            Identity::Key(key) => key.scopes(),
            Identity::External(p) => p.scopes(),
        }
    }

    /// The catalog the scopes are evaluated against.
    #[must_use]
    pub fn catalog(&self) -> &ScopeCatalog {
        match &self.identity {
            Identity::Key(key) => key.catalog(),
            Identity::External(p) => p.catalog(),
        }
    }

    /// Evaluates a requirement against the principal's scopes.
    pub fn check(&self, requirement: &Requirement) -> Decision {
        self.catalog().evaluate(requirement, self.scopes())
    }
}

/// Put into the request extensions by
/// [`RequireScopes`](crate::http::RequireScopes) when a "soon" scope let a
/// request through that an enforced one would refuse. Several requirements
/// on one route add up.
///
/// ```
/// # fn handler(req: http::Request<String>) {
/// use keyward::http::WouldDeny;
///
/// if let Some(would_deny) = req.extensions().get::<WouldDeny>() {
///     println!("this key will need {:?}", would_deny.missing());
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WouldDeny {
    missing: Vec<Scope>,
}

impl WouldDeny {
    /// The scopes that would be missing, sorted, without duplicates.
    #[must_use]
    pub fn missing(&self) -> &[Scope] {
        &self.missing
    }

    pub(crate) fn add(&mut self, missing: &[Scope]) {
        self.missing.extend(missing.iter().cloned());
        self.missing.sort();
        self.missing.dedup();
    }
}

/// Put into the request extensions by an [`AuthLayer`](crate::http::AuthLayer)
/// that let a request without credentials through
/// ([`allow_anonymous`](crate::http::AuthLayer::allow_anonymous)): a scope
/// check behind it answers 401 `missing_credentials` rather than
/// "misconfigured".
#[derive(Clone, Debug)]
pub(crate) struct Anonymous {
    /// The sources the layer reads, for the 401's message.
    pub(crate) accepted: std::sync::Arc<str>,
}

impl Anonymous {
    /// What a check needing a principal answers on a request without one:
    /// 401 behind a layer that let it through anonymously, else (no layer
    /// ran) 500, with an error logged that names the fix.
    pub(crate) fn rejection(extensions: &http::Extensions, what: &str) -> crate::http::Rejection {
        match extensions.get::<Anonymous>() {
            Some(anonymous) => crate::http::Rejection::MissingCredentials {
                accepted: anonymous.accepted.to_string().into(),
            },
            None => {
                tracing::error!(
                    target: "keyward::http",
                    "{what} ran on a request no AuthLayer authenticated: add AuthLayer outside it (in axum, `.layer(AuthLayer)` after the routes or `route_layer`s it protects, so it runs first)"
                );
                crate::http::Rejection::AuthMisconfigured
            }
        }
    }
}
